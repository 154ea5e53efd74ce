"""A Hub stand-in on 127.0.0.1 serving the few HTTP routes a push uses.

Only the network is replaced: ``huggingface_hub.HfApi`` runs unchanged and talks HTTP to this
server (``huggingface_hub.constants.ENDPOINT``, what ``HF_ENDPOINT`` sets) through its own httpx
client. The server says "regular" (not LFS) for every file, so each commit carries every file's
bytes and the tests can read back exactly what was pushed. Every request is recorded; failures
can be injected: an HTTP error status (huggingface_hub 1.x raises its ``HfHubHTTPError``) or a
connection closed without an answer (httpx raises ``httpx.RemoteProtocolError``, a network
failure).

Besides the push, huggingface_hub 1.x asks the Hub for its registry of agent harnesses
(``GET /api/agent-harnesses``, without the token) the first time a process builds its request
headers, unless a fresh copy is cached under ``HF_HOME``; like every route the server does not
serve, it answers 404 (huggingface_hub then goes on without it). ``push_requests`` leaves it out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT_REGISTRY = "/api/agent-harnesses"  # asked by huggingface_hub itself, not by a push


@dataclass
class Request:
    """One request as received (header names lower-cased)."""

    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class FakeHub:
    """``fail_commits``: how many commit attempts answer 500 (-1: all of them);
    ``drop_commits``: how many commit attempts get no answer, their connection closed (-1: all);
    ``create_status``: a status code for repo creation (e.g. 401), None for success."""

    fail_commits: int = 0
    drop_commits: int = 0
    create_status: int | None = None
    requests: list[Request] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)  # {"summary", "branch", "files": {path: bytes}}
    repos: dict = field(default_factory=dict)  # repo_id -> {"private": bool}
    branches: list[str] = field(default_factory=list)

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _serve(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                hub.requests.append(Request(self.command, self.path, headers, body))
                if hub._dropped(self.command, self.path):
                    self.close_connection = True  # no status line, no headers: the client sees the connection end
                    return
                status, payload = hub.answer(self.command, self.path.split("?")[0], body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def push_requests(self) -> list[Request]:
        """The requests the push made (huggingface_hub's own registry lookup left out)."""
        return [r for r in self.requests if r.path.split("?")[0] != AGENT_REGISTRY]

    # ------------------------------------------------------------------ routes
    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "POST" and path == "/api/repos/create":
            if self.create_status is not None:
                return self.create_status, {"error": f"refused with {self.create_status}"}
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            # huggingface_hub 1.x sends ``visibility`` ("public" / "private"); older clients sent ``private``
            visibility = req.get("visibility")
            private = req.get("private") if visibility is None else visibility == "private"
            self.repos.setdefault(repo_id, {"private": private})
            return 200, {"url": f"{self.url}/{repo_id}"}
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        parts = path.split("/")  # ['', 'api', 'models', ns, name, verb, revision]
        if method == "GET" and len(parts) == 5 and parts[:3] == ["", "api", "models"]:  # repo info
            repo_id = f"{parts[3]}/{parts[4]}"
            if repo_id not in self.repos:
                return 404, {"error": f"Repository {repo_id} not found"}
            return 200, {"id": repo_id, "private": self.repos[repo_id]["private"]}
        if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
            repo_id, verb, revision = f"{parts[3]}/{parts[4]}", parts[5], parts[6]
            if repo_id not in self.repos:
                return 404, {"error": f"Repository {repo_id} not found"}
            if method == "GET" and verb == "revision":  # repo info (asked whether the repo uses Xet)
                return 200, {"id": repo_id, "private": self.repos[repo_id]["private"], "xetEnabled": False}
            if method == "POST" and verb == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]}
            if method == "POST" and verb == "branch":
                self.branches.append(revision)
                return 200, {}
            if method == "POST" and verb == "commit":
                return self._commit(repo_id, revision, body)
        return 404, {"error": f"no route {method} {path}"}

    def _commit_attempts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST" and "/commit/" in r.path)

    def _dropped(self, method: str, path: str) -> bool:
        if method != "POST" or "/commit/" not in path or not self.drop_commits:
            return False
        return self.drop_commits < 0 or self._commit_attempts() <= self.drop_commits

    def _commit(self, repo_id: str, revision: str, body: bytes) -> tuple[int, dict]:
        attempts = self._commit_attempts()
        if self.fail_commits < 0 or attempts <= self.fail_commits:
            return 500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                 for line in lines if line["key"] == "file"}
        self.commits.append({"summary": header["summary"], "branch": revision, "files": files})
        oid = hashlib.sha1(body).hexdigest()
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}
