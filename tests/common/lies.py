# The lies a mitmproxy addon tells between restash and an object store (S3 or REST), for
# tests/s3_lies.rs and tests/rest_backend.rs. LIE_MODE chooses them:
#   cut     every other GET of an index file or pack (or a range of it) loses its second
#           half while Content-Length still announces it whole, and the connection closes;
#   short   the same, with a matching, shortened Content-Length;
#   pages   an S3 ListObjectsV2 listing split into two pages, the second repeating the
#           last key of the first;
#   repeat  a REST v2 listing naming every file twice.
# LIE_ALWAYS=1 lies at every GET. What was done is counted in $ADDON_DIR/counts.json.
import itertools, json, os, re
from mitmproxy import http

MODE = os.environ["LIE_MODE"]
# Every GET lied about, not every other one: a lie no second reading cures.
ALWAYS = os.environ.get("LIE_ALWAYS") == "1"
COUNTS = os.path.join(os.environ["ADDON_DIR"], "counts.json")
# S3 keys and REST paths: data/ab/<id> and data/<id> alike.
OBJECT = re.compile(r"/(index|data(?:/[0-9a-f]{2})?)/[0-9a-f]{64}$")
CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.S)
counts = {"requests": 0}
gets = {}
pages = {}
tokens = itertools.count()

def bump(key):
    counts[key] = counts.get(key, 0) + 1
    with open(COUNTS + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(COUNTS + ".tmp", COUNTS)

def request(flow: http.HTTPFlow) -> None:
    bump("requests")
    if MODE == "pages" and flow.request.method == "GET":
        token = flow.request.query.get("continuation-token")
        if token is not None:
            print("continued %s (%s)" % (flow.request.path, token in pages), flush=True)
        if token in pages:
            flow.response = http.Response.make(
                200, pages.pop(token), {"Content-Type": "application/xml"})
            bump("second pages")

def split_listing(flow):
    q = flow.request.query
    if q.get("list-type") != "2" or "continuation-token" in q:
        return
    text = flow.response.content
    items = CONTENTS.findall(text)
    if len(items) < 2 or b"<NextContinuationToken>" in text:
        return
    head = text[: text.find(b"<Contents>")]
    tail = text[text.rfind(b"</Contents>") + len(b"</Contents>"):]
    k = len(items) // 2
    token = "restash-lie-%d" % next(tokens)
    first = (head + b"".join(items[:k]) + tail).replace(
        b"<IsTruncated>false</IsTruncated>",
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>%s</NextContinuationToken>"
        % token.encode())
    if b"<NextContinuationToken>" not in first:
        return
    # The second page starts with the last key of the first.
    pages[token] = head + b"".join(items[k - 1:]) + tail
    flow.response.content = first
    bump("split listings")
    print("split %s: %d + %d keys" % (flow.request.path, k, len(items) - k + 1), flush=True)

def repeat_listing(flow):
    # A REST v2 listing (a JSON array of names and sizes) naming every file twice.
    if not flow.request.path.split("?")[0].endswith("/"):
        return
    try:
        items = json.loads(flow.response.content)
    except ValueError:
        return
    if not isinstance(items, list) or not items:
        return
    flow.response.content = json.dumps(items + items).encode()
    bump("repeated listings")

def response(flow: http.HTTPFlow) -> None:
    if flow.request.method != "GET" or flow.response.status_code not in (200, 206):
        return
    if MODE == "pages":
        split_listing(flow)
        return
    if MODE == "repeat":
        repeat_listing(flow)
        return
    path = flow.request.path.split("?")[0]
    m = OBJECT.search(path)
    if not m:
        return
    key = (path, flow.request.headers.get("range", ""))
    n = gets.get(key, 0)
    gets[key] = n + 1
    body = flow.response.content
    if (n % 2 == 1 and not ALWAYS) or len(body) < 2:
        return
    # Setting the content sets a matching Content-Length.
    flow.response.content = body[: len(body) // 2]
    if MODE == "cut":
        flow.response.headers["content-length"] = str(len(body))
        flow.response.headers["connection"] = "close"
    if m.group(1) == "index":
        bump("index")
    elif flow.response.status_code == 206:
        bump("pack range")
    else:
        bump("pack")
