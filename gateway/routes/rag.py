"""RAG over HTTP: the native collections API and the OpenAI files / vector-store subset.

Thin routes: read the (size-bounded) body, let `gateway.rag_api.RagService` decide, render.
Bodies are read by hand so every upload is capped at `limits.max_body_bytes`; their schemas
are declared in `openapi_extra` so the OpenAPI document stays accurate (multipart included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from gateway.errors import InvalidRequest
from gateway.protocol.common import parse_body, validation_error
from gateway.protocol.rag import (
    DOC_ID_PATTERN,
    VS_NAME,
    CollectionCreate,
    CollectionOut,
    Deleted,
    DocumentCreate,
    DocumentFields,
    DocumentOut,
    FileObject,
    Form,
    HitOut,
    Page,
    SearchRequest,
    SearchResults,
    VectorStore,
    VectorStoreCreate,
    VectorStoreFile,
    VectorStoreFileCreate,
    VectorStoreSearch,
    VectorStoreSearchPage,
    VectorStoreSearchResult,
    parse_multipart,
)
from gateway.rag_api import Caller, RagService, StagedFile
from gateway.routes.common import StateDep, read_body

bearer_scheme = HTTPBearer(auto_error=False,
                           description="A virtual key (fk-...) or the master key.")
_ERR = {"description": "OpenAI-style error: {\"error\": {message, type, param, code}}"}
router = APIRouter(prefix="/v1", responses={400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR,
                                            409: _ERR, 413: _ERR})
M = TypeVar("M", bound=BaseModel)

TenantQ = Annotated[str | None, Query(max_length=200, description=(
    "Master key only: the tenant (id or name) to act for. A virtual key acts for its own."))]
TeamQ = Annotated[str | None, Query(max_length=200, description=(
    "Master key only: narrow to a team (id or name); new collections belong to it."))]
LimitQ = Annotated[int, Query(ge=1, le=100)]
OrderQ = Annotated[Literal["asc", "desc"], Query()]
CursorQ = Annotated[str | None, Query(max_length=200)]


async def get_service(state: StateDep) -> RagService:  # async: sync deps run in a thread
    return RagService(state)


ServiceDep = Annotated[RagService, Depends(get_service)]


async def get_caller(request: Request, service: ServiceDep,
                     _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
                     tenant: TenantQ = None, team: TeamQ = None) -> Caller:
    return service.caller(request.headers.get("authorization"), tenant, team)


CallerDep = Annotated[Caller, Depends(get_caller)]


# -- bodies ----------------------------------------------------------------------------------

def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__} must stay flat to be inlined"
    return {"schema": schema}


def _body(content: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": content}}


def _form(properties: dict[str, Any], required: Sequence[str],
          json_fields: Sequence[str] = ()) -> dict[str, Any]:
    """A multipart/form-data body; `json_fields` are parts holding a JSON document."""
    form: dict[str, Any] = {"schema": {"type": "object", "properties": properties,
                                       "required": list(required)}}
    if json_fields:
        form["encoding"] = {name: {"contentType": "application/json"} for name in json_fields}
    return form


_FILE = {"type": "string", "format": "binary"}
DOCUMENT_BODY = _body({
    "application/json": _json_schema(DocumentCreate),
    "multipart/form-data": _form({
        "file": _FILE,
        "metadata": {"type": "object", "description": "Any JSON object."},
        "doc_id": {"type": "string", "pattern": DOC_ID_PATTERN},
        "title": {"type": "string", "maxLength": 1000},
    }, ["file"], json_fields=["metadata"])})
FILE_BODY = _body({"multipart/form-data": _form(
    {"file": _FILE, "purpose": {"type": "string", "enum": ["assistants", "user_data"]}},
    ["file", "purpose"])})


async def _json(request: Request, service: RagService, model: type[M]) -> M:
    raw = await read_body(request, service.state.settings.limits.max_body_bytes)
    return parse_body(raw, model)[0]


async def _multipart(request: Request, service: RagService) -> Form:
    raw = await read_body(request, service.state.settings.limits.max_body_bytes)
    return parse_multipart(raw, request.headers.get("content-type", ""))


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _require_multipart(request: Request) -> None:
    if not _is_multipart(request):
        raise InvalidRequest("This endpoint takes a multipart/form-data body.",
                             code="unsupported_media_type")


def _cursor_page(items: list[M], limit: int, after: str | None,
                 before: str | None) -> Page[M]:
    """OpenAI cursor pagination over items already in order (each has an `.id`)."""
    ids = [item.id for item in items]  # type: ignore[attr-defined]
    for name, cursor in (("after", after), ("before", before)):
        if cursor is not None and cursor not in ids:
            raise InvalidRequest(f"Unknown cursor '{cursor}'.", param=name, code="invalid_value")
    start = ids.index(after) + 1 if after is not None else 0
    stop = ids.index(before) if before is not None else len(items)
    window = items[start:stop]
    if before is not None and after is None:
        window = window[-limit:]  # the page just before the cursor
    data = window[:limit]
    return Page[M](data=data, first_id=data[0].id if data else None,  # type: ignore[attr-defined]
                   last_id=data[-1].id if data else None,  # type: ignore[attr-defined]
                   has_more=len(window) > limit)


def _ordered(items: list[M], order: str) -> list[M]:
    return sorted(items, key=lambda i: (i.created_at, i.id),  # type: ignore[attr-defined]
                  reverse=order == "desc")


# -- native collections API ------------------------------------------------------------------

@router.post("/collections", status_code=201, response_model=CollectionOut, tags=["rag"],
             openapi_extra=_body({"application/json": _json_schema(CollectionCreate)}),
             summary="Create a collection (master key or rag:write)")
async def create_collection(request: Request, service: ServiceDep,
                            caller: CallerDep) -> CollectionOut:
    body = await _json(request, service, CollectionCreate)
    info = service.create_collection(caller, body.name, scope=body.scope,
                                     description=body.description, metadata=body.metadata)
    return CollectionOut.of(info)


@router.get("/collections", response_model=Page[CollectionOut], tags=["rag"],
            summary="List the collections this key can see")
async def list_collections(service: ServiceDep, caller: CallerDep) -> Page[CollectionOut]:
    return Page[CollectionOut](data=[CollectionOut.of(i) for i in service.list_collections(caller)])


@router.get("/collections/{collection_id}", response_model=CollectionOut, tags=["rag"],
            summary="Get a collection (by id or name)")
async def get_collection(collection_id: str, service: ServiceDep,
                         caller: CallerDep) -> CollectionOut:
    return CollectionOut.of(service.info(caller, collection_id))


@router.delete("/collections/{collection_id}", response_model=Deleted, tags=["rag"],
               summary="Delete a collection with its documents and indexes")
async def delete_collection(collection_id: str, service: ServiceDep, caller: CallerDep) -> Deleted:
    return Deleted(id=await service.delete_collection(caller, collection_id),
                   object="collection")


@router.post("/collections/{collection_id}/documents", status_code=201, response_model=DocumentOut,
             tags=["rag"], openapi_extra=DOCUMENT_BODY,
             summary="Upload a document: a file (multipart) or text (JSON)")
async def add_document(collection_id: str, request: Request, service: ServiceDep,
                       caller: CallerDep) -> DocumentOut:
    service.require_write(caller)  # before reading a possibly large body
    if _is_multipart(request):
        form = await _multipart(request, service)
        upload = form.files.get("file")
        if upload is None:
            raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                                 code="missing_required_parameter")
        try:
            fields = DocumentFields(title=form.text("title"), doc_id=form.text("doc_id"),
                                    metadata=_metadata(form.text("metadata")))
        except ValidationError as exc:
            raise validation_error(exc) from None
        info = await service.add_document(
            caller, collection_id, upload.data, doc_id=fields.doc_id, filename=upload.filename,
            content_type=upload.content_type, title=fields.title, metadata=fields.metadata)
    else:
        ctype = request.headers.get("content-type", "application/json").lower()
        if not ctype.startswith("application/json"):
            raise InvalidRequest("Send a file as multipart/form-data or text as JSON.",
                                 code="unsupported_media_type")
        body = await _json(request, service, DocumentCreate)
        info = await service.add_document(
            caller, collection_id, body.text, doc_id=body.doc_id, filename=body.filename,
            content_type=body.content_type, title=body.title, metadata=body.metadata)
    return DocumentOut.of(info)


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest("The 'metadata' field must be a JSON object.", param="metadata",
                             code="invalid_value")
    return value


@router.get("/collections/{collection_id}/documents", response_model=Page[DocumentOut],
            tags=["rag"], summary="List a collection's documents")
async def list_documents(collection_id: str, service: ServiceDep, caller: CallerDep,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0)] = 0) -> Page[DocumentOut]:
    docs = service.documents(caller, collection_id)
    window = docs[offset : offset + limit]
    return Page[DocumentOut](data=[DocumentOut.of(d) for d in window],
                first_id=window[0].id if window else None,
                last_id=window[-1].id if window else None,
                has_more=offset + limit < len(docs))


@router.get("/collections/{collection_id}/documents/{doc_id}", response_model=DocumentOut,
            tags=["rag"], summary="Get one document's record")
async def get_document(collection_id: str, doc_id: str, service: ServiceDep,
                       caller: CallerDep) -> DocumentOut:
    return DocumentOut.of(service.document(caller, collection_id, doc_id))


@router.delete("/collections/{collection_id}/documents/{doc_id}", response_model=Deleted,
               tags=["rag"], summary="Delete a document (from the store and both indexes)")
async def delete_document(collection_id: str, doc_id: str, service: ServiceDep,
                          caller: CallerDep) -> Deleted:
    await service.delete_document(caller, collection_id, doc_id)
    return Deleted(id=doc_id, object="collection.document")


@router.post("/collections/{collection_id}/reindex", response_model=CollectionOut, tags=["rag"],
             summary="Re-parse, re-chunk and re-embed every document")
async def reindex(collection_id: str, service: ServiceDep, caller: CallerDep) -> CollectionOut:
    return CollectionOut.of(await service.reindex(caller, collection_id))


@router.post("/collections/{collection_id}/search", response_model=SearchResults, tags=["rag"],
             openapi_extra=_body({"application/json": _json_schema(SearchRequest)}),
             summary="Search a collection (fused, dense or bm25)")
async def search(collection_id: str, request: Request, service: ServiceDep,
                 caller: CallerDep) -> SearchResults:
    body = await _json(request, service, SearchRequest)
    hits = await service.search(caller, collection_id, body.query, body.k, body.mode)
    return SearchResults(query=body.query, mode=body.mode, data=[HitOut.of(h) for h in hits])


# -- OpenAI: files ---------------------------------------------------------------------------

def _file_object(f: StagedFile) -> FileObject:
    return FileObject(id=f.id, bytes=f.bytes, created_at=f.created_at, filename=f.filename,
                      purpose=f.purpose)


@router.post("/files", response_model=FileObject, tags=["openai-files"], openapi_extra=FILE_BODY,
             summary="Upload a file to attach to vector stores (OpenAI-compatible)")
async def create_file(request: Request, service: ServiceDep, caller: CallerDep) -> FileObject:
    service.require_write(caller)
    _require_multipart(request)
    form = await _multipart(request, service)
    upload = form.files.get("file")
    if upload is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                             code="missing_required_parameter")
    purpose = form.text("purpose")
    if purpose not in ("assistants", "user_data"):
        raise InvalidRequest("frugate keeps files for vector stores: 'purpose' must be "
                             "'assistants' or 'user_data'.", param="purpose",
                             code="invalid_value")
    filename = (upload.filename or "upload")[:1000]
    staged = await service.stage_file(caller, upload.data, filename=filename,
                                content_type=upload.content_type, purpose=purpose)
    return _file_object(staged)


@router.get("/files", response_model=Page[FileObject], tags=["openai-files"],
            summary="List staged files")
async def list_files(service: ServiceDep, caller: CallerDep,
                     purpose: Annotated[str | None, Query(max_length=64)] = None,
                     limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
                     order: OrderQ = "desc", after: CursorQ = None) -> Page[FileObject]:
    files = [_file_object(f) for f in service.staged_files(caller)
             if purpose is None or f.purpose == purpose]
    return _cursor_page(_ordered(files, order), limit, after, None)


@router.get("/files/{file_id}", response_model=FileObject, tags=["openai-files"],
            summary="Get a staged file's record")
async def get_file(file_id: str, service: ServiceDep, caller: CallerDep) -> FileObject:
    return _file_object(service.staged_file(caller, file_id))


@router.get("/files/{file_id}/content", tags=["openai-files"], response_class=Response,
            responses={200: {"content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}},
            summary="Download a staged file's bytes")
async def file_content(file_id: str, service: ServiceDep, caller: CallerDep) -> Response:
    _, data = service.file_content(caller, file_id)
    return Response(data, media_type="application/octet-stream")


@router.delete("/files/{file_id}", response_model=Deleted, tags=["openai-files"],
               summary="Delete a staged file and remove it from this key's vector stores")
async def delete_file(file_id: str, service: ServiceDep, caller: CallerDep) -> Deleted:
    await service.delete_file(caller, file_id)
    return Deleted(id=file_id, object="file")


# -- OpenAI: vector stores -------------------------------------------------------------------

@router.post("/vector_stores", response_model=VectorStore, tags=["openai-vector-stores"],
             openapi_extra=_body({"application/json": _json_schema(VectorStoreCreate)}),
             summary="Create a vector store (a frugate collection; OpenAI-compatible)")
async def create_vector_store(request: Request, service: ServiceDep,
                              caller: CallerDep) -> VectorStore:
    body = await _json(request, service, VectorStoreCreate)
    metadata: dict[str, Any] = dict(body.metadata or {})
    if body.name is not None:
        metadata[VS_NAME] = body.name
    for file_id in body.file_ids or []:  # refuse unknown files before creating anything
        service.staged_file(caller, file_id)
    info = service.create_collection(caller, None, scope=body.scope,
                                     description=body.description or "", metadata=metadata)
    try:
        for file_id in body.file_ids or []:
            await service.attach_file(caller, info.id, file_id)
    except BaseException:  # all or nothing: a file that fails to ingest undoes the store
        await service.delete_collection(caller, info.id)
        raise
    return VectorStore.of(service.info(caller, info.id))


@router.get("/vector_stores", response_model=Page[VectorStore], tags=["openai-vector-stores"],
            summary="List vector stores")
async def list_vector_stores(service: ServiceDep, caller: CallerDep, limit: LimitQ = 20,
                             order: OrderQ = "desc", after: CursorQ = None,
                             before: CursorQ = None) -> Page[VectorStore]:
    stores = [VectorStore.of(i) for i in service.list_collections(caller)]
    return _cursor_page(_ordered(stores, order), limit, after, before)


@router.get("/vector_stores/{vector_store_id}", response_model=VectorStore,
            tags=["openai-vector-stores"], summary="Get a vector store")
async def get_vector_store(vector_store_id: str, service: ServiceDep,
                           caller: CallerDep) -> VectorStore:
    return VectorStore.of(service.info(caller, vector_store_id))


@router.delete("/vector_stores/{vector_store_id}", response_model=Deleted,
               tags=["openai-vector-stores"], summary="Delete a vector store")
async def delete_vector_store(vector_store_id: str, service: ServiceDep,
                              caller: CallerDep) -> Deleted:
    deleted = await service.delete_collection(caller, vector_store_id)
    return Deleted(id=deleted, object="vector_store.deleted")


@router.post("/vector_stores/{vector_store_id}/files", response_model=VectorStoreFile,
             tags=["openai-vector-stores"],
             openapi_extra=_body({"application/json": _json_schema(VectorStoreFileCreate)}),
             summary="Attach a staged file (ingested before this returns)")
async def attach_file(vector_store_id: str, request: Request, service: ServiceDep,
                      caller: CallerDep) -> VectorStoreFile:
    body = await _json(request, service, VectorStoreFileCreate)
    doc = await service.attach_file(caller, vector_store_id, body.file_id, body.attributes)
    return VectorStoreFile.of(doc)


@router.get("/vector_stores/{vector_store_id}/files", response_model=Page[VectorStoreFile],
            tags=["openai-vector-stores"], summary="List a vector store's files")
async def list_vector_store_files(
        vector_store_id: str, service: ServiceDep, caller: CallerDep, limit: LimitQ = 20,
        order: OrderQ = "desc", after: CursorQ = None, before: CursorQ = None,
        filter: Annotated[Literal["in_progress", "completed", "failed", "cancelled"] | None,
                          Query()] = None) -> Page[VectorStoreFile]:
    docs = service.documents(caller, vector_store_id)
    files = [VectorStoreFile.of(d) for d in docs if filter in (None, "completed")]
    return _cursor_page(_ordered(files, order), limit, after, before)


@router.get("/vector_stores/{vector_store_id}/files/{file_id}", response_model=VectorStoreFile,
            tags=["openai-vector-stores"], summary="Get a vector store file")
async def get_vector_store_file(vector_store_id: str, file_id: str, service: ServiceDep,
                                caller: CallerDep) -> VectorStoreFile:
    return VectorStoreFile.of(service.document(caller, vector_store_id, file_id))


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}", response_model=Deleted,
               tags=["openai-vector-stores"],
               summary="Remove a file from a vector store (the staged file stays)")
async def detach_file(vector_store_id: str, file_id: str, service: ServiceDep,
                      caller: CallerDep) -> Deleted:
    await service.delete_document(caller, vector_store_id, file_id)
    return Deleted(id=file_id, object="vector_store.file.deleted")


@router.post("/vector_stores/{vector_store_id}/search", response_model=VectorStoreSearchPage,
             tags=["openai-vector-stores"],
             openapi_extra=_body({"application/json": _json_schema(VectorStoreSearch)}),
             summary="Search a vector store (OpenAI-compatible; `mode` is a frugate extension)")
async def search_vector_store(vector_store_id: str, request: Request, service: ServiceDep,
                              caller: CallerDep) -> VectorStoreSearchPage:
    body = await _json(request, service, VectorStoreSearch)
    queries = body.queries()
    hits = await service.search_filtered(caller, vector_store_id, "\n".join(queries),
                                         body.max_num_results, body.mode, body.filters,
                                         body.score_threshold())
    return VectorStoreSearchPage(search_query=queries,
                                 data=[VectorStoreSearchResult.of(h) for h in hits])
