"""The native collections API over HTTP: auth and scopes, tenancy, uploads, search, errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.errors import InvalidRequest
from gateway.protocol.rag import FormFile, parse_multipart
from gateway.tenancy import hash_key
from tests.gateway.harness import GatewayServer, pool, settings_for
from tests.rag.conftest import make_pdf
from workers.sim.process import SimServer

MASTER = "fk-test-master"
HTML = (b"<!doctype html><html><head><title>Expense policy</title><style>p{color:red}</style>"
        b"</head><body><nav>Home | About</nav><h1>Travel</h1><p>Taxis to the airport are "
        b"reimbursed up to 60 euros.</p><script>var leaked = 'tracking';</script></body></html>")


def client(gw: GatewayServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {key}"},
                        timeout=60)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(gateway: GatewayServer) -> dict[str, str]:
    """Keys of tenant acme (two teams) and of tenant globex."""
    return {
        "writer": gateway.make_key("acme", "search", scopes=["rag:write"]),
        "reader": gateway.make_key("acme", "search"),
        "other_team": gateway.make_key("acme", "sales", scopes=["rag:write"]),
        "outsider": gateway.make_key("globex", "search", scopes=["rag:write"]),
    }


@pytest.fixture
def collection(gateway: GatewayServer, keys: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A fresh team-scoped collection of acme/search holding one Markdown document."""
    with client(gateway, keys["writer"]) as c:
        col = ok(c.post("/collections", json={"name": f"kb-{secrets.token_hex(4)}"}), 201)
        ok(c.post(f"/collections/{col['id']}/documents", json={
            "text": "# VPN\n\nReset the VPN password in the IT portal under 'Reset VPN "
                    "credentials'.", "filename": "vpn.md", "doc_id": "vpn",
            "metadata": {"owner": "it"}}), 201)
        yield col
        c.delete(f"/collections/{col['id']}")


def test_collection_lifecycle(gateway: GatewayServer, keys: dict[str, str]) -> None:
    with client(gateway, keys["writer"]) as c:
        col = ok(c.post("/collections", json={"name": "handbook", "description": "HR",
                                              "metadata": {"dept": "hr"}}), 201)
        assert col["id"].startswith("vs_") and col["object"] == "collection"
        writer = gateway.state.directory.lookup(hash_key(keys["writer"]))
        assert writer is not None and col["team"] == writer.team_id  # scope "team" by default
        assert col["tenant"] == writer.tenant_id and col["description"] == "HR"
        assert ok(c.get("/collections/handbook"))["id"] == col["id"]  # by name too
        assert col["id"] in [x["id"] for x in ok(c.get("/collections"))["data"]]
        doc = ok(c.post(f"/collections/{col['id']}/documents", files={
            "file": ("leave.md", b"# Leave\n\nEmployees get 25 days of paid leave a year.",
                     "text/markdown")}, data={"metadata": '{"year": 2024}', "doc_id": "leave"}),
            201)
        assert (doc["id"], doc["format"], doc["title"]) == ("leave", "markdown", "Leave")
        assert doc["metadata"] == {"year": 2024} and doc["chunk_count"] >= 1
        assert ok(c.get(f"/collections/{col['id']}"))["document_count"] == 1
        hits = ok(c.post(f"/collections/{col['id']}/search",
                         json={"query": "how many days of paid leave", "k": 3}))["data"]
        assert hits[0]["doc_id"] == "leave" and "25 days" in hits[0]["text"]
        listed = ok(c.get(f"/collections/{col['id']}/documents"))["data"]
        assert [d["id"] for d in listed] == ["leave"]
        ok(c.delete(f"/collections/{col['id']}"))
        assert error(c.get(f"/collections/{col['id']}"), 404)["code"] == "collection_not_found"


def test_delete_document_removes_it_from_both_indexes(
        gateway: GatewayServer, keys: dict[str, str], collection: dict[str, Any]) -> None:
    cid = collection["id"]
    with client(gateway, keys["writer"]) as c:
        ok(c.post(f"/collections/{cid}/documents", json={
            "text": "The canteen serves lunch from noon to two on weekdays.", "doc_id": "food"}),
            201)
        query = "when does the canteen serve lunch"
        for mode in ("bm25", "dense", "fused"):
            hits = ok(c.post(f"/collections/{cid}/search",
                             json={"query": query, "k": 5, "mode": mode}))
            assert hits["mode"] == mode and hits["data"][0]["doc_id"] == "food"
        ok(c.delete(f"/collections/{cid}/documents/food"))
        for mode in ("bm25", "dense", "fused"):
            hits = ok(c.post(f"/collections/{cid}/search",
                             json={"query": query, "k": 5, "mode": mode}))["data"]
            assert "food" not in [h["doc_id"] for h in hits], mode
        assert error(c.delete(f"/collections/{cid}/documents/food"), 404)["code"] == \
            "document_not_found"


def test_reindex_keeps_search_working(gateway: GatewayServer, keys: dict[str, str],
                                      collection: dict[str, Any]) -> None:
    cid = collection["id"]
    with client(gateway, keys["writer"]) as c:
        before = ok(c.post(f"/collections/{cid}/search", json={"query": "VPN password"}))
        out = ok(c.post(f"/collections/{cid}/reindex"))
        assert out["id"] == cid and out["document_count"] == 1 and out["chunk_count"] >= 1
        after = ok(c.post(f"/collections/{cid}/search", json={"query": "VPN password"}))
    assert [h["chunk_id"] for h in after["data"]] == [h["chunk_id"] for h in before["data"]]
    assert after["data"][0]["doc_id"] == "vpn"


def test_html_and_pdf_uploads_are_parsed(gateway: GatewayServer, keys: dict[str, str],
                                         collection: dict[str, Any]) -> None:
    cid = collection["id"]
    pdf = make_pdf(["Safety briefing for visitors.", "Hard hats are required on site B."],
                   title="Site rules")
    with client(gateway, keys["writer"]) as c:
        html = ok(c.post(f"/collections/{cid}/documents",
                         files={"file": ("expenses.html", HTML, "text/html")}), 201)
        assert (html["format"], html["title"]) == ("html", "Expense policy")
        doc = ok(c.post(f"/collections/{cid}/documents",
                        files={"file": ("rules.pdf", pdf, "application/pdf")}), 201)
        assert (doc["format"], doc["title"]) == ("pdf", "Site rules")
        hit = ok(c.post(f"/collections/{cid}/search",
                        json={"query": "are hard hats required", "k": 1}))["data"][0]
        assert hit["doc_id"] == doc["id"] and hit["page"] == 2 and "Hard hats" in hit["text"]
        taxi = ok(c.post(f"/collections/{cid}/search",
                         json={"query": "taxi airport reimbursed", "k": 1}))["data"][0]
        assert taxi["doc_id"] == html["id"] and "60 euros" in taxi["text"]
        assert "tracking" not in taxi["text"] and "color" not in taxi["text"]


def test_reader_key_gets_403_on_every_write(gateway: GatewayServer, keys: dict[str, str],
                                            collection: dict[str, Any]) -> None:
    cid = collection["id"]
    with client(gateway, keys["reader"]) as c:
        writes = [
            c.post("/collections", json={"name": "nope"}),
            c.delete(f"/collections/{cid}"),
            c.post(f"/collections/{cid}/documents", json={"text": "x"}),
            c.post(f"/collections/{cid}/documents", files={"file": ("a.txt", b"x")}),
            c.delete(f"/collections/{cid}/documents/vpn"),
            c.post(f"/collections/{cid}/reindex"),
            c.post("/files", files={"file": ("a.txt", b"x")}, data={"purpose": "assistants"}),
            c.post("/vector_stores", json={"name": "nope"}),
            c.post(f"/vector_stores/{cid}/files", json={"file_id": "file-" + "0" * 24}),
            c.delete(f"/vector_stores/{cid}/files/vpn"),
            c.delete(f"/vector_stores/{cid}"),
        ]
        for resp in writes:
            err = error(resp, 403)
            assert (err["type"], err["code"]) == ("permission_error", "missing_scope")
        # reads work, and nothing was changed
        assert ok(c.get(f"/collections/{cid}"))["document_count"] == 1
        assert ok(c.post(f"/collections/{cid}/search", json={"query": "VPN"}))["data"]
        assert [d["id"] for d in ok(c.get(f"/collections/{cid}/documents"))["data"]] == ["vpn"]
        assert ok(c.get(f"/vector_stores/{cid}/files"))["data"][0]["id"] == "vpn"


def _every_route(c: httpx.Client, cid: str, file_id: str) -> list[httpx.Response]:
    return [
        c.get(f"/collections/{cid}"),
        c.delete(f"/collections/{cid}"),
        c.post(f"/collections/{cid}/documents", json={"text": "intrusion"}),
        c.get(f"/collections/{cid}/documents"),
        c.get(f"/collections/{cid}/documents/vpn"),
        c.delete(f"/collections/{cid}/documents/vpn"),
        c.post(f"/collections/{cid}/reindex"),
        c.post(f"/collections/{cid}/search", json={"query": "VPN"}),
        c.get(f"/vector_stores/{cid}"),
        c.delete(f"/vector_stores/{cid}"),
        c.post(f"/vector_stores/{cid}/files", json={"file_id": file_id}),
        c.get(f"/vector_stores/{cid}/files"),
        c.get(f"/vector_stores/{cid}/files/vpn"),
        c.delete(f"/vector_stores/{cid}/files/vpn"),
        c.post(f"/vector_stores/{cid}/search", json={"query": "VPN"}),
        c.get(f"/files/{file_id}"),
        c.get(f"/files/{file_id}/content"),
        c.delete(f"/files/{file_id}"),
    ]


@pytest.mark.parametrize("who", ["outsider", "other_team"])
def test_other_tenant_or_team_gets_404_on_every_route(
        gateway: GatewayServer, keys: dict[str, str], collection: dict[str, Any],
        who: str) -> None:
    cid = collection["id"]
    with client(gateway, keys["writer"]) as owner:
        staged = ok(owner.post("/files", files={"file": ("memo.txt", b"Staged memo text.")},
                               data={"purpose": "assistants"}))
        missing = _every_route(owner, "vs_" + "0" * 24, "file-" + "0" * 24)
    with client(gateway, keys[who]) as c:
        for resp, absent in zip(_every_route(c, cid, staged["id"]), missing, strict=True):
            err = error(resp, 404)
            assert err["code"] == error(absent, 404)["code"], resp.request.url  # same as missing
        assert cid not in [x["id"] for x in ok(c.get("/collections"))["data"]]
        assert staged["id"] not in [f["id"] for f in ok(c.get("/files"))["data"]]
    with client(gateway, keys["writer"]) as owner:  # and nothing was touched
        assert ok(owner.get(f"/collections/{cid}"))["document_count"] == 1
        assert ok(owner.get(f"/files/{staged['id']}"))["bytes"] == len(b"Staged memo text.")


def test_tenant_scope_is_shared_by_the_tenant_teams(gateway: GatewayServer,
                                                    keys: dict[str, str]) -> None:
    with client(gateway, keys["writer"]) as c:
        col = ok(c.post("/collections", json={"scope": "tenant"}), 201)
        assert col["team"] is None
    with client(gateway, keys["other_team"]) as c:
        assert ok(c.get(f"/collections/{col['id']}"))["id"] == col["id"]
        ok(c.delete(f"/collections/{col['id']}"))  # rag:write on a tenant-wide collection
    with client(gateway, keys["outsider"]) as c:
        error(c.get(f"/collections/{col['id']}"), 404)


def test_master_key_acts_for_a_named_tenant(gateway: GatewayServer, keys: dict[str, str]) -> None:
    with client(gateway, MASTER) as admin:
        err = error(admin.get("/collections"), 400)
        assert (err["param"], err["code"]) == ("tenant", "missing_required_parameter")
        assert error(admin.get("/collections", params={"tenant": "nobody"}), 404)["code"] == \
            "tenant_not_found"
        assert error(admin.get("/collections", params={"tenant": "acme", "team": "nope"}),
                     404)["code"] == "team_not_found"
        col = ok(admin.post("/collections", params={"tenant": "acme"},
                            json={"name": "policies"}), 201)
        assert col["team"] is None  # no team given: tenant-wide
        team_col = ok(admin.post("/collections", params={"tenant": "acme", "team": "sales"},
                                 json={}), 201)
        assert team_col["team"] is not None
    with client(gateway, keys["reader"]) as c:  # acme/search sees the tenant-wide one only
        ids = [x["id"] for x in ok(c.get("/collections"))["data"]]
        assert col["id"] in ids and team_col["id"] not in ids
    with client(gateway, keys["outsider"]) as c:
        error(c.get(f"/collections/{col['id']}"), 404)
    with client(gateway, MASTER) as admin:
        for cid in (col["id"], team_col["id"]):
            ok(admin.delete(f"/collections/{cid}", params={"tenant": "acme"}))


def test_virtual_keys_act_for_their_own_tenant(gateway: GatewayServer,
                                               keys: dict[str, str]) -> None:
    with client(gateway, keys["writer"]) as c:
        assert error(c.get("/collections", params={"tenant": "globex"}), 403)["code"] == \
            "tenant_mismatch"
        ok(c.get("/collections", params={"tenant": "acme"}))
    with httpx.Client(base_url=gateway.base_url) as anon:
        assert error(anon.get("/collections"), 401)["type"] == "authentication_error"
    with client(gateway, "fk-not-a-key") as c:
        error(c.post("/collections", json={}), 401)


def test_bad_input_is_a_4xx_in_openai_format(gateway: GatewayServer, keys: dict[str, str],
                                             collection: dict[str, Any]) -> None:
    cid = collection["id"]
    with client(gateway, keys["writer"]) as c:
        name = collection["name"]
        assert error(c.post("/collections", json={"name": name}), 409)["code"] == \
            "collection_exists"
        error(c.post("/collections", json={"name": "vs_sneaky"}), 400)
        error(c.post("/collections", json={"name": "a/b"}), 400)
        error(c.post("/collections", json={"nmae": "typo"}), 400)
        error(c.post("/collections", content=b"{not json", headers={
            "content-type": "application/json"}), 400)
        assert error(c.post(f"/collections/{cid}/documents", json={"text": "again",
                                                                   "doc_id": "vpn"}),
                     409)["code"] == "document_exists"
        png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
        err = error(c.post(f"/collections/{cid}/documents",
                           files={"file": ("logo.png", png, "image/png")}), 400)
        assert err["code"] == "invalid_document"
        error(c.post(f"/collections/{cid}/documents", json={"text": "   \n "}), 400)
        error(c.post(f"/collections/{cid}/documents", files={"file": ("a.txt", b"hi")},
                     data={"metadata": "[1, 2]"}), 400)
        error(c.post(f"/collections/{cid}/documents", files={"file": ("a.txt", b"hi")},
                     data={"doc_id": "bad id/x"}), 400)
        error(c.post(f"/collections/{cid}/documents", data={"title": "no file"},
                     files={"other": ("a.txt", b"hi")}), 400)
        error(c.post(f"/collections/{cid}/documents", content=b"--x\r\nbroken",
                     headers={"content-type": "multipart/form-data; boundary=x"}), 400)
        error(c.post(f"/collections/{cid}/documents", content=b"hi",
                     headers={"content-type": "multipart/form-data"}), 400)
        error(c.post(f"/collections/{cid}/documents", content=b"plain",
                     headers={"content-type": "text/plain"}), 400)
        error(c.post(f"/collections/{cid}/search", json={"query": ""}), 400)
        error(c.post(f"/collections/{cid}/search", json={"query": "x", "k": 500}), 400)
        error(c.post(f"/collections/{cid}/search", json={"query": "x", "mode": "magic"}), 400)
        error(c.get(f"/collections/{cid}/documents", params={"limit": 0}), 400)
        for odd in ("file-..%5C..%5Cx", "...", "file-" + "0" * 24 + ".json"):
            assert error(c.get(f"/files/{odd}"), 404)["code"] == "file_not_found", odd
        error(c.post("/files", files={"file": ("a.txt", b"x")}, data={"purpose": "batch"}),
              400)
        error(c.post("/files", json={"purpose": "assistants"}), 400)


def test_upload_size_is_bounded(sims: dict[str, SimServer], embedder: Any,
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = settings_for([pool("small", sims["small"].url)], tmp_path_factory.mktemp("gw"),
                            limits={"max_body_bytes": 32 * 1024})
    with GatewayServer(settings, embedder) as gw, client(gw, MASTER) as admin:
        gw.make_key("acme", "search")  # creates the tenant
        col = ok(admin.post("/collections", params={"tenant": "acme"}, json={}), 201)
        big = b"word " * 10_000
        for resp in (
            admin.post(f"/collections/{col['id']}/documents", params={"tenant": "acme"},
                       files={"file": ("big.txt", big)}),
            admin.post(f"/collections/{col['id']}/documents", params={"tenant": "acme"},
                       json={"text": big.decode()}),
            admin.post("/files", params={"tenant": "acme"}, files={"file": ("big.txt", big)},
                       data={"purpose": "assistants"}),
        ):
            assert error(resp, 413)["code"] == "payload_too_large"
        assert ok(admin.get(f"/collections/{col['id']}", params={"tenant": "acme"}))[
            "document_count"] == 0


def test_openapi_documents_the_rag_routes(gateway: GatewayServer) -> None:
    schema = httpx.get(gateway.url + "/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/v1/collections/{collection_id}/documents"]) == {"get", "post"}
    upload = paths["/v1/collections/{collection_id}/documents"]["post"]["requestBody"]
    assert set(upload["content"]) == {"application/json", "multipart/form-data"}
    form = upload["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    files = paths["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert files["schema"]["required"] == ["file", "purpose"]
    for path in ("/v1/vector_stores", "/v1/vector_stores/{vector_store_id}/files",
                 "/v1/vector_stores/{vector_store_id}/search", "/v1/collections/{collection_id}"
                 "/search", "/v1/collections/{collection_id}/reindex"):
        assert "post" in paths[path], path
    search = paths["/v1/vector_stores/{vector_store_id}/search"]["post"]
    assert "query" in search["requestBody"]["content"]["application/json"]["schema"]["required"]


def test_multipart_reader_keeps_bytes_exact() -> None:
    tricky = b"\r\n--not-the-boundary\r\n\r\n\x00\xff binary\r\n"
    req = httpx.Request("POST", "http://x/", data={"title": "Résumé", "doc_id": "a1"},
                        files={"file": ("naïve notes.md", tricky, "text/markdown")})
    form = parse_multipart(req.read(), req.headers["content-type"])
    upload = form.files["file"]
    assert upload.data == tricky and upload.content_type == "text/markdown"
    assert upload.filename == "naïve notes.md"
    assert (form.text("title"), form.text("doc_id"), form.text("missing")) == \
        ("Résumé", "a1", None)
    rfc2231 = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
               b"filename*=UTF-8''%E2%82%AC.txt\r\n\r\n\r\n--b\r\n"
               b"Content-Disposition: form-data; name=\"\"\r\n\r\nskipped\r\n--b--\r\n")
    form = parse_multipart(rfc2231, "multipart/form-data; boundary=b")
    assert form.files["file"] == FormFile("€.txt", None, b"") and form.fields == {}


@pytest.mark.parametrize("body", [
    b"", b"no boundary here", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx",
    b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
    b"--b\r\n--b--", b"--bjunk\r\n\r\nx\r\n--b--",
    b"".join(b"--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n" % i
             for i in range(40)) + b"--b--",
])
def test_multipart_reader_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_multipart(body, "multipart/form-data; boundary=b")
    assert info.value.code == "invalid_multipart"


def test_rag_disabled_answers_404(sims: dict[str, SimServer], embedder: Any,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = settings_for([pool("small", sims["small"].url)], tmp_path_factory.mktemp("gw"),
                            rag={"enabled": False})
    with GatewayServer(settings, embedder) as gw, client(gw, gw.make_key()) as c:
        for resp in (c.get("/collections"), c.get("/vector_stores"),
                     c.post("/collections/x/search", json={"query": "q"})):
            assert error(resp, 404)["code"] == "rag_disabled"


def test_concurrent_uploads_and_searches(gateway: GatewayServer, keys: dict[str, str],
                                         collection: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cid = collection["id"]
    topics = ["glaciers", "volcanoes", "tides", "comets", "deserts", "monsoons"]

    def upload(topic: str) -> int:
        with client(gateway, keys["writer"]) as c:
            return c.post(f"/collections/{cid}/documents", json={
                "text": f"A long note about {topic}. " * 40, "doc_id": topic}).status_code

    def search(_: int) -> int:
        with client(gateway, keys["reader"]) as c:
            return c.post(f"/collections/{cid}/search", json={"query": "VPN"}).status_code

    with ThreadPoolExecutor(8) as pool:
        uploads = pool.map(upload, topics)
        searches = pool.map(search, range(12))
        assert list(uploads) == [201] * len(topics) and list(searches) == [200] * 12
    with client(gateway, keys["reader"]) as c:
        assert ok(c.get(f"/collections/{cid}"))["document_count"] == len(topics) + 1
        hits = ok(c.post(f"/collections/{cid}/search", json={"query": "comets", "k": 1}))
        assert hits["data"][0]["doc_id"] == "comets"


def test_deleting_a_tenant_deletes_its_collections_and_staged_files(
        gateway: GatewayServer) -> None:
    master = {"authorization": "Bearer fk-test-master"}
    with httpx.Client(base_url=gateway.url, headers=master, timeout=30) as admin:
        tenant = ok(admin.post("/admin/tenants", json={"name": "doomed"}), 201)["id"]
        col = ok(admin.post(f"/v1/collections?tenant={tenant}", json={"name": "notes"}), 201)
        ok(admin.post(f"/v1/collections/{col['id']}/documents?tenant={tenant}",
                      json={"text": "hello there", "title": "t"}), 201)
        ok(admin.post(f"/v1/files?tenant={tenant}", files={"file": ("a.txt", b"hello")},
                      data={"purpose": "assistants"}))
        store = gateway.state.grounding.store
        staged = gateway.state.settings.data_dir / "files" / tenant
        assert [c.id for c in store.list(tenant)] == [col["id"]] and staged.exists()
        ok(admin.delete(f"/admin/tenants/{tenant}"))
        assert store.list(tenant) == [] and not staged.exists()
