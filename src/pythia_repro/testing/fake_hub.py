"""A loopback stand-in for the few Hugging Face Hub endpoints `upload` uses.

Binds 127.0.0.1 only, keeps repos in memory (branches -> {path: bytes}), records every
request (method, path, headers, body) for the tests, and can fail chosen requests with a
status code first to exercise retries. It tells the client to send every file inline
("regular" upload mode), so no LFS/Xet storage endpoint is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case names
    body: bytes


@dataclass
class Repo:
    branches: dict = field(default_factory=dict)  # name -> {"commit": sha, "files": {path: bytes}}


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.fail_next: list[tuple[str, int]] = []  # (regex on "METHOD path", status), consumed in order
        self.lock = threading.Lock()
        self._commits = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                with hub.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    hub.requests.append(Request(self.command, parsed.path, headers, body))
                    for i, (pattern, status) in enumerate(hub.fail_next):
                        if re.search(pattern, f"{self.command} {parsed.path}"):
                            del hub.fail_next[i]
                            return self._send(status, {"error": "injected failure"})
                    status, payload, headers = hub.route(self.command, unquote(parsed.path), body)
                self._send(status, payload, headers)

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ----- endpoints ---------------------------------------------------------------------------
    def _new_commit(self, files: dict) -> str:
        self._commits += 1
        tree = "".join(f"{p}:{git_sha1(d)}\n" for p, d in sorted(files.items()))
        return hashlib.sha1(f"{self._commits}\n{tree}".encode()).hexdigest()

    def route(self, method: str, path: str, body: bytes):
        not_found = {"X-Error-Code": "RepoNotFound"}
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}, {}
            files = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            self.repos[repo_id] = Repo({"main": {"commit": self._new_commit(files), "files": files}})
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}, {}

        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|branch|preupload|commit)/(.+)", path)
        if not m:
            return 404, {"error": f"no route {method} {path}"}, {}
        repo_id, action, rev = m.groups()
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": "Repository not found"}, not_found

        if action == "revision" and method == "GET":
            branch = repo.branches.get(rev)
            if branch is None:
                return 404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"}
            siblings = [
                {"rfilename": p, "blobId": git_sha1(d), "size": len(d)} for p, d in sorted(branch["files"].items())
            ]
            return 200, {"id": repo_id, "sha": branch["commit"], "siblings": siblings, "private": False}, {}

        if action == "branch" and method == "POST":
            if rev in repo.branches:
                return 409, {"error": "Branch already exists"}, {}
            start = repo.branches["main"]
            repo.branches[rev] = {"commit": start["commit"], "files": dict(start["files"])}
            return 200, {}, {}

        branch = repo.branches.get(rev)
        if branch is None:
            return 404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"}

        if action == "preupload" and method == "POST":
            files = []
            for f in json.loads(body)["files"]:
                existing = branch["files"].get(f["path"])
                files.append({
                    "path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                    "oid": git_sha1(existing) if existing is not None else None,
                })
            return 200, {"files": files, "commitOid": branch["commit"]}, {}

        if action == "commit" and method == "POST":
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            files = dict(branch["files"])
            for item in lines:
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            branch["files"] = files
            branch["commit"] = self._new_commit(files)
            return 200, {
                "commitUrl": f"{self.url}/{repo_id}/commit/{branch['commit']}",
                "commitOid": branch["commit"], "success": True,
            }, {}
        return 405, {"error": f"{method} not allowed on {path}"}, {}

    # ----- what tests look at -------------------------------------------------------------------
    def writes(self) -> list[Request]:
        """Requests that change state or carry file content."""
        return [r for r in self.requests if r.method != "GET"]
