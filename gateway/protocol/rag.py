"""Wire models of the RAG HTTP surface: the native collections API and the OpenAI subset
(`/v1/files`, `/v1/vector_stores`), plus the multipart/form-data reader the uploads use.

Native requests are strict (`extra="forbid"`): a misspelt field is an error. OpenAI requests
allow unknown fields, like the rest of the OpenAI surface, so newer SDK parameters do not break
calls. Request models are flat (no nested models) so their JSON schema can be inlined in the
OpenAPI document. Responses follow the shapes in the `openai` SDK's `types/` package.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.errors import InvalidRequest
from rag import CollectionInfo, DocumentInfo, Hit

# Collection names and document ids travel in URL paths: keep them URL-safe. A name may not
# look like a collection id ("vs_..."), which would shadow it in lookups.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Scope = Literal["team", "tenant"]
Purpose = Literal["assistants", "user_data"]
Mode = Literal["fused", "dense", "bm25"]
T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OpenAIIn(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- native API: requests --------------------------------------------------------------------

class CollectionCreate(_In):
    name: str | None = Field(default=None, pattern=NAME_PATTERN,
                             description="Unique within the tenant; optional; not 'vs_...'.")
    description: str = Field(default="", max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: Scope | None = Field(
        default=None, description="team (default for a team key: only its team sees it) or "
        "tenant (every team of the tenant). With the master key, the collection belongs to "
        "the `team` query parameter's team, if given.")

    @field_validator("name")
    @classmethod
    def _not_an_id(cls, name: str | None) -> str | None:
        if name is not None and name.startswith("vs_"):
            raise ValueError("a name may not start with 'vs_' (collection ids do)")
        return name


class DocumentFields(_In):
    """What a document upload may say about the document, as JSON or as form fields."""

    title: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    doc_id: str | None = Field(default=None, pattern=DOC_ID_PATTERN)


class DocumentCreate(DocumentFields):
    """A document given as text in a JSON body (files go as multipart/form-data)."""

    text: str = Field(min_length=1)
    filename: str | None = Field(default=None, max_length=1000,
                                 description="Its extension picks the parser (.md, .html, .txt).")
    content_type: str | None = Field(default=None, max_length=200)


class SearchRequest(_In):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=5, ge=1, le=50)
    mode: Mode = "fused"


# -- native API: responses -------------------------------------------------------------------

class CollectionOut(BaseModel):
    id: str
    object: Literal["collection"] = "collection"
    name: str | None
    tenant: str
    team: str | None
    description: str
    metadata: dict[str, Any]
    created_at: int
    document_count: int
    chunk_count: int
    bytes: int

    @classmethod
    def of(cls, info: CollectionInfo) -> CollectionOut:
        return cls(id=info.id, name=info.name, tenant=info.tenant, team=info.team,
                   description=info.description, metadata=info.metadata,
                   created_at=int(info.created_at), document_count=info.document_count,
                   chunk_count=info.chunk_count, bytes=info.bytes)


class DocumentOut(BaseModel):
    id: str
    object: Literal["collection.document"] = "collection.document"
    collection_id: str
    filename: str | None
    content_type: str | None
    format: str
    title: str
    metadata: dict[str, Any]
    bytes: int
    chunk_count: int
    created_at: int

    @classmethod
    def of(cls, doc: DocumentInfo) -> DocumentOut:
        return cls(id=doc.id, collection_id=doc.collection_id, filename=doc.filename,
                   content_type=doc.content_type, format=doc.format, title=doc.title,
                   metadata=doc.metadata, bytes=doc.bytes, chunk_count=doc.chunk_count,
                   created_at=int(doc.created_at))


class HitOut(BaseModel):
    chunk_id: str
    doc_id: str
    text: str
    title: str
    context: str
    score: float
    position: int
    n_tokens: int
    filename: str | None
    page: int | None
    metadata: dict[str, Any]

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        return cls(chunk_id=hit.chunk_id, doc_id=hit.doc_id, text=hit.text, title=hit.title,
                   context=hit.context, score=hit.score, position=hit.position,
                   n_tokens=hit.n_tokens, filename=hit.filename, page=hit.page,
                   metadata=hit.metadata)


class SearchResults(BaseModel):
    object: Literal["list"] = "list"
    query: str
    mode: Mode
    data: list[HitOut]


class Page(BaseModel, Generic[T]):
    """A list; OpenAI's cursor fields let the SDK's auto-pagination stop or go on."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


# -- OpenAI subset: requests -----------------------------------------------------------------

class VectorStoreCreate(_OpenAIIn):
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    file_ids: list[str] | None = Field(default=None, max_length=500)
    chunking_strategy: dict[str, Any] | None = None  # accepted; frugate's chunking applies
    expires_after: dict[str, Any] | None = None  # accepted; vector stores do not expire
    scope: Scope | None = None  # frugate extension, as for collections


class VectorStoreFileCreate(_OpenAIIn):
    file_id: str = Field(min_length=1, max_length=128)
    attributes: dict[str, str | float | bool] | None = Field(default=None, max_length=16)
    chunking_strategy: dict[str, Any] | None = None  # accepted; frugate's chunking applies


# A query must hold at least one non-space character (`pattern` is a search, not a match).
QueryText = Annotated[str, Field(min_length=1, max_length=8000, pattern=r"\S")]


class VectorStoreSearch(_OpenAIIn):
    query: QueryText | Annotated[list[QueryText], Field(min_length=1, max_length=8)]
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: dict[str, Any] | None = None
    rewrite_query: bool | None = None  # accepted; queries are used as sent
    mode: Mode = "fused"  # frugate extension (extra_body)

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)

    def score_threshold(self) -> float | None:
        value = (self.ranking_options or {}).get("score_threshold")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest("ranking_options.score_threshold must be a number.",
                                 param="ranking_options.score_threshold", code="invalid_value")
        return float(value)


# -- OpenAI subset: responses ----------------------------------------------------------------

class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileCounts(BaseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    description: str | None = None
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"] = "completed"
    last_active_at: int | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None
    expires_at: int | None = None

    @classmethod
    def of(cls, info: CollectionInfo) -> VectorStore:
        metadata = {k: v for k, v in info.metadata.items() if k != VS_NAME}
        name = info.metadata.get(VS_NAME) or info.name or ""
        n = info.document_count
        return cls(id=info.id, created_at=int(info.created_at), name=str(name),
                   description=info.description or None, usage_bytes=info.bytes,
                   file_counts=FileCounts(completed=n, total=n),
                   last_active_at=int(info.created_at), metadata=_strings(metadata))


class VectorStoreFile(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"] = "completed"
    usage_bytes: int
    last_error: dict[str, str] | None = None
    attributes: dict[str, str | float | bool] | None = None
    chunking_strategy: dict[str, Any] | None = None

    @classmethod
    def of(cls, doc: DocumentInfo) -> VectorStoreFile:
        return cls(id=doc.id, created_at=int(doc.created_at), vector_store_id=doc.collection_id,
                   usage_bytes=doc.bytes, attributes=scalars(doc.metadata))


class SearchContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class VectorStoreSearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, str | float | bool] | None = None
    content: list[SearchContent]

    @classmethod
    def of(cls, hit: Hit) -> VectorStoreSearchResult:
        return cls(file_id=hit.doc_id, filename=hit.filename or hit.title or hit.doc_id,
                   score=hit.score, attributes=scalars(hit.metadata),
                   content=[SearchContent(text=hit.text)])


class VectorStoreSearchPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[VectorStoreSearchResult]
    has_more: bool = False
    next_page: str | None = None


# The OpenAI name of a vector store, kept in its collection's metadata: OpenAI allows two
# vector stores with one name, frugate collection names are unique per tenant.
VS_NAME = "vector_store_name"


def scalars(metadata: dict[str, Any]) -> dict[str, str | float | bool]:
    """OpenAI attributes are flat: strings, numbers, booleans."""
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool)}


def _strings(metadata: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else str(v) for k, v in metadata.items()}


# -- multipart/form-data ---------------------------------------------------------------------

@dataclass(frozen=True)
class FormFile:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, bytes]
    files: dict[str, FormFile]

    def text(self, name: str) -> str | None:
        """A field as text; only the fields an endpoint reads must be UTF-8."""
        raw = self.fields.get(name)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"The form field '{name}' is not UTF-8 text.", param=name) from None


_MAX_PARTS = 32


def parse_multipart(body: bytes, content_type: str) -> Form:
    """Split an already size-bounded multipart/form-data body (RFC 7578) into fields and files.

    The body was read whole under the request size limit, so parts are plain slices: no
    spooling, no second limit to keep in step.
    """
    head = email.message.Message()
    head["content-type"] = content_type
    boundary = head.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 200:
        raise _bad("The multipart body has no boundary.")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise _bad("The multipart body does not start with its boundary.")
    fields: dict[str, bytes] = {}
    files: dict[str, FormFile] = {}
    pos = start + len(delimiter)
    for _ in range(_MAX_PARTS + 1):
        if body[pos : pos + 2] == b"--":
            return Form(fields, files)
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise _bad("Malformed multipart boundary line.")
        nxt = body.find(b"\r\n" + delimiter, eol)
        if nxt < 0:
            raise _bad("The multipart body is truncated.")
        end = body.find(b"\r\n\r\n", eol, nxt + 2)  # the part's headers end before the next
        if end < 0:
            raise _bad("A multipart part has no header/body separator.")
        _add_part(body[eol + 2 : end], body[end + 4 : nxt], fields, files)
        pos = nxt + 2 + len(delimiter)
    raise _bad(f"Too many multipart parts (at most {_MAX_PARTS}).")


def _add_part(raw_headers: bytes, data: bytes, fields: dict[str, bytes],
              files: dict[str, FormFile]) -> None:
    # Clients send non-ASCII names as raw UTF-8 (HTML5, httpx, requests), not RFC 2047.
    text = raw_headers.decode("utf-8", errors="replace")
    headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(
        text + "\r\n\r\n")
    if headers.get_content_disposition() != "form-data":
        raise _bad("Each multipart part needs 'Content-Disposition: form-data'.")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        return  # nothing can ask for a nameless part: skip it, as for unknown fields
    filename = headers.get_filename()
    if filename is not None or name == "file":
        files[name] = FormFile(filename or None, headers.get("content-type"), data)
        return
    fields[name] = data


def _bad(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_multipart")
