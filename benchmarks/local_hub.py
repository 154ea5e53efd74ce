"""Dataset and model repos of the Hugging Face Hub served over HTTP on 127.0.0.1 from local folders.

Only the network is replaced: huggingface_hub (and so LeRobot's own downloads) runs unchanged and
its requests for https://huggingface.co are sent to this server by the transport of the HTTP
client huggingface_hub 1.x builds through its client factory (``set_client_factory``): the client
is huggingface_hub's own (``default_client_factory``: its request hook, which refuses every
request while ``HF_HUB_OFFLINE`` is set, its redirects and timeouts) with one httpx transport
mounted for the Hub's address. Leaving the ``with`` block puts huggingface_hub's own factory back
(``set_client_factory`` also closes the shared client, so no request reaches the server after).
A process that only knows the server's URL reaches it through ``HF_ENDPOINT`` instead.

The server answers the routes downloads use: refs (``list_repo_refs``), repo info with its file
list and the recursive file tree (``snapshot_download``) and file HEAD/GET under ``resolve/``
(``hf_hub_download``); everything else is a 404. Every request is recorded, so tests can count
which files were fetched and how many bytes were sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from huggingface_hub import set_client_factory
from huggingface_hub.utils._http import default_client_factory

HUB = "https://huggingface.co"
TAGS = ("v3.0",)  # LeRobot resolves its codebase version as a tag of the dataset repo
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = {  # dataset repos (``/datasets/...``, ``/api/datasets/...``) and model repos
    "refs": re.compile(rf"^/api/(?:datasets|models)/{REPO}/refs$"),
    "info": re.compile(rf"^/api/(?:datasets|models)/{REPO}/revision/(?P<rev>[^/]+)$"),
    "tree": re.compile(rf"^/api/(?:datasets|models)/{REPO}/tree/(?P<rev>[^/]+)$"),
    "file": re.compile(rf"^/(?:datasets/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"),
}


@dataclass
class Request:
    method: str
    route: str  # refs | info | file | unknown
    path: str  # the URL path
    file: str | None = None  # repo file, for route "file"
    bytes_sent: int = 0


class LocalHub:
    """``with LocalHub({"lerobot/libero": folder}) as hub:`` serves those repos at one commit each."""

    def __init__(self, repos: dict[str, Path]):
        self.repos = {repo_id: Path(folder) for repo_id, folder in repos.items()}
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    # --- what the tests read -------------------------------------------------------------------
    def files(self, repo_id: str) -> list[str]:
        folder = self.repos[repo_id]
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                      if p.is_file() and ".cache" not in p.relative_to(folder).parts)

    def commit(self, repo_id: str) -> str:
        digest = hashlib.sha1()
        for name in self.files(repo_id):
            digest.update(f"{name}:{(self.repos[repo_id] / name).stat().st_size};".encode())
        return digest.hexdigest()

    def downloads(self) -> list[str]:
        """Repo files whose content was sent (GET), in request order."""
        return [r.file for r in self.requests if r.route == "file" and r.bytes_sent]

    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.requests if r.route == "file")

    # --- serving ---------------------------------------------------------------------------------
    def __enter__(self) -> "LocalHub":
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        set_client_factory(self._client)
        return self

    def __exit__(self, *exc) -> None:
        set_client_factory(default_client_factory)  # huggingface_hub's own client again
        self.server.shutdown()
        self.server.server_close()

    def _client(self) -> httpx.Client:
        """huggingface_hub's own client, with the Hub's address mounted on a transport to this server.

        Offline mode needs nothing here: huggingface_hub's request hook checks ``HF_HUB_OFFLINE``
        on every request, before any transport is reached.
        """
        own = default_client_factory()
        client = httpx.Client(headers=own.headers, event_hooks=own.event_hooks, timeout=own.timeout,
                              follow_redirects=own.follow_redirects, mounts={HUB: _ToLocalHub(self.url)})
        own.close()
        return client

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(self, method: str, path: str) -> tuple[int, dict, bytes]:
        """Status, headers and body of the Hub's answer to ``method path``."""
        for route, pattern in ROUTES.items():
            match = pattern.match(path)
            if match:
                break
        else:
            return 404, {}, b""
        repo_id = match["repo"]
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, b"Repository not found"
        sha = self.commit(repo_id)
        if route == "refs":
            ref = lambda name, kind: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}  # noqa: E731
            body = {"branches": [ref("main", "heads")], "tags": [ref(t, "tags") for t in TAGS], "converts": []}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        if unquote(match["rev"]) not in ("main", sha, *TAGS):
            return 404, {"X-Error-Code": "RevisionNotFound"}, b"Revision not found"
        if route == "info":
            siblings = [{"rfilename": name} for name in self.files(repo_id)]
            body = {"id": repo_id, "sha": sha, "private": False, "siblings": siblings}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        if route == "tree":  # every file (recursive=True), as list_repo_tree reads it
            folder = self.repos[repo_id]
            body = [{"type": "file", "path": name, "size": (folder / name).stat().st_size,
                     "oid": hashlib.sha1((folder / name).read_bytes()).hexdigest()} for name in self.files(repo_id)]
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        name = unquote(match["file"])
        if name not in self.files(repo_id):
            return 404, {"X-Error-Code": "EntryNotFound"}, b"Entry not found"
        content = (self.repos[repo_id] / name).read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                   "Content-Type": "application/octet-stream"}
        return 200, headers, content


class _ToLocalHub(httpx.HTTPTransport):
    """Sends a request meant for the Hub to the local server instead (same path and query)."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = self.base_url.copy_with(raw_path=request.url.raw_path)
        request.headers["Host"] = self.base_url.netloc.decode("ascii")
        return super().handle_request(request)


def _handler(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            status, headers, body = hub._answer(self.command, path)
            match = ROUTES["file"].match(path)
            file = unquote(match["file"]) if match and status == 200 else None
            route = next((name for name, p in ROUTES.items() if p.match(path)), "unknown")
            hub._record(Request(self.command, route, path, file, len(body) if send_body and file else 0))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            self._serve(send_body=True)

        def do_HEAD(self):  # noqa: N802
            self._serve(send_body=False)

        def log_message(self, *args):
            pass

    return Handler
