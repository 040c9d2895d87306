from tests.conftest import LiveServer, Tenant


def test_server_starts_and_answers(server: LiveServer, tenant: Tenant) -> None:
    with server.client(tenant) as c:
        r = c.post("/api/v1/users", json={"name": "Ada"})
        assert r.status_code == 201
        assert r.json()["name"] == "Ada"
