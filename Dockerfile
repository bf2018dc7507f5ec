# restash in a container: FROM scratch with the static binary, run as non-root.
# Build the binary first (no base image is pulled):
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p restash
#   podman build -t restash .
# The Kubernetes Job and its manifests arrive with the in-pod agent issue.
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/restash /restash
USER 65534:65534
ENTRYPOINT ["/restash"]
