# restash in a container: FROM scratch with the static binary, run as non-root.
#
# No base image is pulled and nothing is compiled here: build the static binary on the host
# and give this file a context holding only that binary (scripts/build-image.sh does both):
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --profile container --target x86_64-unknown-linux-gnu -p restash
#   ctx=$(mktemp -d) && cp target/x86_64-unknown-linux-gnu/container/restash "$ctx"/
#   podman build -t localhost/restash -f Dockerfile "$ctx"      # or docker build
#
# The image has no CA files (restash trusts its bundled Mozilla roots plus any mounted at
# /etc/ssl), no shell and no /tmp: give the Job `readOnlyRootFilesystem: true`, an emptyDir
# at /tmp, and the repository password and keys as files (RESTIC_PASSWORD_FILE,
# AWS_ACCESS_KEY_ID_FILE, AWS_SECRET_ACCESS_KEY_FILE).
FROM scratch
COPY restash /restash
# The distroless "nonroot" uid. To read a JupyterHub home (uid 1000, gid 100, private files)
# run as 1000:100. `podman run --cap-add DAC_READ_SEARCH` also works as 65532, but Kubernetes
# gives added capabilities to non-root processes only as ambient ones, which it cannot set:
# there run as root with only that capability (`restash k8s … --privileged-read`).
USER 65532:65532
ENTRYPOINT ["/restash"]
