"""Serving logic of the RAG HTTP surface (no FastAPI here; `gateway.routes.rag` dispatches).

Who may do what:
- reads (list, get, list documents/files, search): any valid key of the tenant, or the master
  key acting for a tenant (`?tenant=<id or name>`, optionally `&team=<id or name>`);
- writes (create/delete collections, upload/delete documents and files, reindex): the master
  key, or a key whose scopes contain `rag:write`.

A key sees its tenant's tenant-wide collections and its own team's; anything else, another
tenant's above all, answers 404 exactly like a missing id. Staged files (`POST /v1/files`)
follow the same rule and live under `<data_dir>/files/<tenant id>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from gateway.protocol.rag import Scope
from gateway.state import State
from gateway.tenancy import authenticate, authenticate_master
from rag import (
    Collection,
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    CollectionStore,
    DocumentExists,
    DocumentInfo,
    DocumentNotFound,
    Hit,
    InvalidDocument,
    RagError,
    SearchMode,
)

WRITE_SCOPE = "rag:write"
_FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
_FILTER_DEPTH = 200  # chunks fetched before attribute filters drop some
_MAX_FILTER_DEPTH = 8
_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")


@dataclass(frozen=True)
class Caller:
    """Whom a RAG request acts for."""

    tenant: str
    team: str | None  # None: sees every collection of the tenant (master key, no team given)
    writer: bool
    master: bool = False


@dataclass(frozen=True)
class StagedFile:
    """A file uploaded with `POST /v1/files`, waiting to be attached to vector stores."""

    id: str
    tenant: str
    team: str | None
    filename: str
    content_type: str | None
    purpose: str
    bytes: int
    created_at: int

    def visible_to(self, caller: Caller) -> bool:
        return self.tenant == caller.tenant and (caller.team is None or
                                                 self.team in (None, caller.team))


class RagService:
    """Made per request over the app's state (cheap); holds no state of its own."""

    def __init__(self, state: State) -> None:
        self.state = state

    @property
    def store(self) -> CollectionStore:
        if self.state.grounding is None:
            raise NotFound("RAG is disabled on this gateway (rag.enabled: false).",
                           code="rag_disabled")
        return self.state.grounding.store  # type: ignore[no-any-return]

    # -- who is calling ------------------------------------------------------------------------

    def caller(self, authorization: str | None, tenant: str | None = None,
               team: str | None = None) -> Caller:
        master = self.state.settings.master_key
        try:
            authenticate_master(master.get_secret_value() if master else None, authorization)
        except AuthenticationFailed:
            pass
        else:
            return self._master_caller(tenant, team)
        p = authenticate(self.state.directory, authorization)
        directory = self.state.directory
        own_tenant = directory.tenants.get(p.tenant_id)
        own_team = directory.teams.get(p.team_id)
        if tenant is not None and tenant not in (p.tenant_id, own_tenant and own_tenant.name):
            raise PermissionDenied("A virtual key acts for its own tenant only.",
                                   param="tenant", code="tenant_mismatch")
        if team is not None and team not in (p.team_id, own_team and own_team.name):
            raise PermissionDenied("A virtual key acts for its own team only.",
                                   param="team", code="team_mismatch")
        return Caller(p.tenant_id, p.team_id, WRITE_SCOPE in p.scopes)

    def _master_caller(self, tenant: str | None, team: str | None) -> Caller:
        if not tenant:
            raise InvalidRequest("With the master key, say which tenant: ?tenant=<id or name>.",
                                 param="tenant", code="missing_required_parameter")
        directory = self.state.directory
        found = directory.tenants.get(tenant) or next(
            (t for t in directory.tenants.values() if t.name == tenant), None)
        if found is None:
            raise NotFound(f"No tenant '{tenant}'.", param="tenant", code="tenant_not_found")
        team_id = None
        if team:
            match = [t for t in directory.teams.values() if t.tenant_id == found.id
                     and team in (t.id, t.name)]
            if not match:
                raise NotFound(f"No team '{team}' in this tenant.", param="team",
                               code="team_not_found")
            team_id = match[0].id
        return Caller(found.id, team_id, writer=True, master=True)

    @staticmethod
    def require_write(caller: Caller) -> None:
        if not caller.writer:
            raise PermissionDenied(f"This key lacks the '{WRITE_SCOPE}' scope needed to change "
                                   "collections and files.", code="missing_scope")

    @staticmethod
    def owner_team(caller: Caller, scope: Scope | None) -> str | None:
        """The team a new collection or file belongs to (None: the whole tenant)."""
        if scope == "tenant":
            return None
        if scope == "team" and caller.team is None:
            raise InvalidRequest("scope 'team' needs a team: pass ?team=<id or name>.",
                                 param="scope", code="invalid_value")
        return caller.team

    # -- collections ---------------------------------------------------------------------------

    def create_collection(self, caller: Caller, name: str | None, *, scope: Scope | None,
                          description: str = "",
                          metadata: dict[str, Any] | None = None) -> CollectionInfo:
        self.require_write(caller)
        team = self.owner_team(caller, scope)
        with rag_errors():
            return self.store.create(caller.tenant, name, team=team, description=description,
                                     metadata=metadata).info()

    def list_collections(self, caller: Caller) -> list[CollectionInfo]:
        # store.list reads each collection's totals after releasing its lock: one deleted in
        # between raises CollectionNotFound. Listing again no longer includes it.
        for _ in range(3):
            with contextlib.suppress(CollectionNotFound):
                return self.store.list(caller.tenant, team=caller.team)
        with rag_errors():
            return self.store.list(caller.tenant, team=caller.team)

    def collection(self, caller: Caller, ref: str) -> Collection:
        with rag_errors():
            return self.store.get(caller.tenant, ref, team=caller.team)

    def info(self, caller: Caller, ref: str) -> CollectionInfo:
        with rag_errors():  # a collection deleted meanwhile is closed: 404, not 500
            return self.collection(caller, ref).info()

    def documents(self, caller: Caller, ref: str) -> list[DocumentInfo]:
        with rag_errors():
            return self.collection(caller, ref).documents()

    async def delete_collection(self, caller: Caller, ref: str) -> str:
        self.require_write(caller)
        with rag_errors():
            collection = self.store.get(caller.tenant, ref, team=caller.team)
            await asyncio.to_thread(self.store.delete, caller.tenant, collection.id,
                                    team=caller.team)  # removes a folder tree
        return collection.id

    # -- documents -----------------------------------------------------------------------------

    async def add_document(self, caller: Caller, ref: str, content: bytes | str, *,
                           doc_id: str | None = None, filename: str | None = None,
                           content_type: str | None = None, title: str | None = None,
                           metadata: dict[str, Any] | None = None) -> DocumentInfo:
        """Parse, chunk, embed and index one document, in a worker thread."""
        self.require_write(caller)
        collection = self.collection(caller, ref)
        with rag_errors():
            return await asyncio.to_thread(
                collection.add_document, content, doc_id=doc_id, filename=filename,
                content_type=content_type, title=title, metadata=metadata)

    def document(self, caller: Caller, ref: str, doc_id: str) -> DocumentInfo:
        collection = self.collection(caller, ref)
        with rag_errors():
            return collection.document(doc_id)

    async def delete_document(self, caller: Caller, ref: str, doc_id: str) -> None:
        """Gone from the store and from both indexes (dense and BM25)."""
        self.require_write(caller)
        collection = self.collection(caller, ref)
        with rag_errors():  # may load the index and rewrites its snapshot: off the loop
            await asyncio.to_thread(collection.delete_document, doc_id)

    async def reindex(self, caller: Caller, ref: str) -> CollectionInfo:
        self.require_write(caller)
        collection = self.collection(caller, ref)
        with rag_errors():
            await asyncio.to_thread(collection.reindex)
            return collection.info()

    async def search(self, caller: Caller, ref: str, query: str, k: int,
                     mode: SearchMode = "fused") -> list[Hit]:
        """Top-k chunks; the query is embedded once, micro-batched with other requests."""
        collection = self.collection(caller, ref)
        vector: npt.NDArray[np.float32] | None = None
        if mode != "bm25":
            vector = await self.state.embedder.embed_one(query)
        with rag_errors():
            return await asyncio.to_thread(collection.search, query, vector, k, mode)

    async def search_filtered(self, caller: Caller, ref: str, query: str, k: int,
                              mode: SearchMode, filters: dict[str, Any] | None,
                              score_threshold: float | None) -> list[Hit]:
        """`search` with OpenAI's attribute filters and score threshold applied to the hits."""
        if filters is not None:
            matches({}, filters)  # refuse a malformed filter even when nothing would match
        hits = await self.search(caller, ref, query, filter_depth(k, filters is not None), mode)
        if filters is not None:
            hits = [h for h in hits if matches(h.metadata, filters)]
        if score_threshold is not None:
            hits = [h for h in hits if h.score >= score_threshold]
        return hits[:k]

    # -- staged files (POST /v1/files) ---------------------------------------------------------

    async def stage_file(self, caller: Caller, data: bytes, *, filename: str,
                         content_type: str | None, purpose: str) -> StagedFile:
        self.require_write(caller)
        if not data:
            raise InvalidRequest("The uploaded file is empty.", param="file",
                                 code="invalid_file")
        staged = StagedFile(id=f"file-{secrets.token_hex(12)}", tenant=caller.tenant,
                            team=caller.team, filename=filename, content_type=content_type,
                            purpose=purpose, bytes=len(data), created_at=int(time.time()))
        folder = self._files_dir(caller.tenant)

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder / staged.id, data)
            _write_atomic(folder / f"{staged.id}.json", json.dumps(asdict(staged)).encode())

        await asyncio.to_thread(write)
        return staged

    def staged_file(self, caller: Caller, file_id: str) -> StagedFile:
        missing = NotFound(f"No file '{file_id}' for this key.", param="file_id",
                           code="file_not_found")
        if not _FILE_ID.match(file_id):  # never let a request name a path
            raise missing
        try:
            meta = json.loads((self._files_dir(caller.tenant) / f"{file_id}.json").read_bytes())
            staged = StagedFile(**meta)
        except (OSError, ValueError, TypeError):  # missing, or not a record we wrote
            raise missing from None
        if not staged.visible_to(caller):
            raise missing
        return staged

    def staged_files(self, caller: Caller) -> list[StagedFile]:
        found = []
        for path in self._files_dir(caller.tenant).glob("file-*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                staged = StagedFile(**json.loads(path.read_bytes()))
                if staged.visible_to(caller):
                    found.append(staged)
        return sorted(found, key=lambda f: (f.created_at, f.id))

    def file_content(self, caller: Caller, file_id: str) -> tuple[StagedFile, bytes]:
        staged = self.staged_file(caller, file_id)
        try:
            return staged, (self._files_dir(caller.tenant) / staged.id).read_bytes()
        except OSError:
            raise NotFound(f"No file '{file_id}' for this key.", param="file_id",
                           code="file_not_found") from None

    async def delete_file(self, caller: Caller, file_id: str) -> None:
        """Delete a staged file and, as OpenAI does, remove it from the caller's vector stores."""
        self.require_write(caller)
        staged = self.staged_file(caller, file_id)
        collections = self.list_collections(caller)
        folder = self._files_dir(caller.tenant)

        def delete() -> None:
            for info in collections:
                with contextlib.suppress(RagError):
                    collection = self.store.get(caller.tenant, info.id, team=caller.team)
                    collection.document(staged.id)  # SQLite only: most collections stop here
                    collection.delete_document(staged.id)
            for path in (folder / f"{staged.id}.json", folder / staged.id):
                path.unlink(missing_ok=True)

        await asyncio.to_thread(delete)

    async def attach_file(self, caller: Caller, ref: str, file_id: str,
                          attributes: dict[str, Any] | None = None) -> DocumentInfo:
        """Ingest a staged file into a collection; its id becomes the document id.

        Attaching a file that is already there returns the existing document (idempotent).
        """
        self.require_write(caller)
        collection = self.collection(caller, ref)
        staged, data = self.file_content(caller, file_id)
        with rag_errors(), contextlib.suppress(DocumentNotFound):
            return collection.document(staged.id)
        try:
            return await self.add_document(caller, ref, data, doc_id=staged.id,
                                           filename=staged.filename,
                                           content_type=staged.content_type,
                                           metadata=dict(attributes or {}))
        except Conflict:  # attached concurrently by another request
            with rag_errors():
                return collection.document(staged.id)

    def _files_dir(self, tenant: str) -> Path:
        return self.state.settings.data_dir / "files" / _safe(tenant)

    def forget_tenant(self, tenant: str) -> int:
        """Delete every collection and staged file of a deleted tenant; returns collections."""
        n = 0
        if self.state.grounding is not None:
            store = self.state.grounding.store
            for info in store.list(tenant):
                with contextlib.suppress(CollectionNotFound):
                    store.delete(tenant, info.id)
                    n += 1
        shutil.rmtree(self._files_dir(tenant), ignore_errors=True)
        return n


@contextlib.contextmanager
def rag_errors() -> Iterator[None]:
    """Map the rag library's errors onto the gateway's (404, 409, 400)."""
    try:
        yield
    except CollectionNotFound as exc:
        raise NotFound(f"No collection '{exc.ref}' for this key.", param="collection_id",
                       code="collection_not_found") from None
    except DocumentNotFound as exc:
        raise NotFound(f"No document '{exc.doc_id}' in this collection.", param="doc_id",
                       code="document_not_found") from None
    except CollectionExists as exc:
        raise Conflict(f"A collection named '{exc.name}' already exists in this tenant.",
                       param="name", code="collection_exists") from None
    except DocumentExists as exc:
        raise Conflict(f"A document with id '{exc.doc_id}' already exists in this collection.",
                       param="doc_id", code="document_exists") from None
    except InvalidDocument as exc:
        raise InvalidRequest(f"Unsupported or unreadable document: {exc}", param="file",
                             code="invalid_document") from None


def matches(attributes: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> bool:
    """OpenAI attribute filters: comparison {type, key, value} or compound {type, filters}.

    Every part is evaluated (no short cut), so a malformed filter is refused even where an
    earlier part already decided the outcome.
    """
    kind = str(spec.get("type"))
    if kind in ("and", "or"):
        parts = spec.get("filters")
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise _bad_filter("a compound filter needs a list of filters")
        if depth >= _MAX_FILTER_DEPTH:
            raise _bad_filter(f"nested deeper than {_MAX_FILTER_DEPTH} levels")
        results = [matches(attributes, p, depth + 1) for p in parts]
        return all(results) if kind == "and" else any(results)
    key, want = spec.get("key"), spec.get("value")
    if not isinstance(key, str) or kind not in _COMPARISONS:
        raise _bad_filter("use {type: eq|ne|gt|gte|lt|lte|in|nin, key, value} "
                          "or {type: and|or, filters: [...]}")
    have = attributes.get(key)
    if kind in ("in", "nin"):
        if not isinstance(want, list):
            raise _bad_filter(f"'{kind}' needs a list value")
        return bool(have in want) == (kind == "in")
    if kind in ("eq", "ne"):
        return bool(have == want) == (kind == "eq")
    order: dict[str, Callable[[Any, Any], Any]] = {
        "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
    try:
        return have is not None and bool(order[kind](have, want))
    except TypeError:  # a number compared with a string: not a match
        return False


def filter_depth(k: int, filtered: bool) -> int:
    """How many chunks to fetch: filters drop hits after retrieval, so look deeper first."""
    return max(k, _FILTER_DEPTH) if filtered else k


def _bad_filter(why: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid filters: {why}.", param="filters", code="invalid_value")


def _safe(tenant: str) -> str:
    """Tenant ids come from the directory, but a path component must never escape its folder."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", tenant) or tenant in (".", ".."):
        raise InvalidRequest("This tenant id cannot name a folder.", code="invalid_tenant")
    return tenant


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
