"""The rag error tree.

    RagError
    ├── NotFound             (the gateway answers 404)
    │   ├── CollectionNotFound   also what a caller from another tenant gets
    │   └── DocumentNotFound
    ├── Conflict             (409)
    │   ├── CollectionExists
    │   └── DocumentExists
    └── InvalidDocument      (400: unsupported type, unreadable or empty content)
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error the rag library raises on purpose."""


class NotFound(RagError):
    pass


class CollectionNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"collection {ref!r} not found")
        self.ref = ref


class DocumentNotFound(NotFound):
    def __init__(self, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} not found")
        self.doc_id = doc_id


class Conflict(RagError):
    pass


class CollectionExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists")
        self.name = name


class DocumentExists(Conflict):
    def __init__(self, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} already exists")
        self.doc_id = doc_id


class InvalidDocument(RagError):
    pass
