"""HTTP executor against a real local server (127.0.0.1 only), and the SSRF guard.

Every request in this module goes to 127.0.0.1: success cases allow-list it, refusal cases
assert that nothing was sent at all (the transport is watched).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kernel.wire.protocol import ExecutionResult
from tests.fixtures.http_server import Server, serve
from tests.worker.helpers import LogCollector, MessageFactory
from worker.addresses import classify_address
from worker.executors import ExecutorPolicy, HttpExecutor

LOCAL = ExecutorPolicy(http_allowlist=("127.0.0.1",))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve() as running:
        yield running


@dataclass
class Tls:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for ``api.example.test`` (and only that name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory: Path = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=str(cert_path))
    return Tls(server_context, client_context)


@pytest.fixture(scope="module")
def tls_server(tls: Tls) -> Iterator[Server]:
    with serve(tls.server_context) as running:
        yield running


@pytest.fixture
def no_traffic(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Records (and blocks) every request that would reach the transport."""
    sent: list[httpx.Request] = []

    async def refuse(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise AssertionError(f"request sent to {request.url}")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", refuse)
    return sent


def fixed_resolver(answers: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return answers[host]

    return resolve


async def run(
    make_message: MessageFactory,
    logs: LogCollector,
    spec: dict[str, Any],
    executor: HttpExecutor | None = None,
) -> ExecutionResult:
    return await (executor or HttpExecutor(LOCAL)).execute(make_message(spec), logs)


# --- requests that are allowed ------------------------------------------------------------


async def test_get_json(server: Server, logs: LogCollector, make_message: MessageFactory) -> None:
    result = await run(make_message, logs, {"url": f"{server.base}/json"})
    assert result.status == "succeeded", result
    assert result.output["status_code"] == 200
    assert result.output["body"] == {"hello": "world"}
    assert result.output["headers"]["content-type"] == "application/json; charset=utf-8"
    assert all(name == name.lower() for name in result.output["headers"])
    assert logs.text("system") == [f"GET {server.base}/json -> 200"]


async def test_text_body_and_headers(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await run(make_message, logs, {"url": f"{server.base}/text"})
    assert result.output["body"] == "plain ✓"
    assert result.output["headers"]["x-custom"] == "yes"


async def test_problem_json_and_bad_json(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    problem = await run(
        make_message, logs, {"url": f"{server.base}/problem", "expect_status": [422]}
    )
    assert problem.status == "succeeded"
    assert problem.output["body"] == {"detail": "bad"}
    bad = await run(make_message, logs, {"url": f"{server.base}/bad-json"})
    assert bad.output["body"] == "{nope"  # unparseable JSON is returned as text


async def test_post_json_body_and_headers(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    spec = {
        "method": "post",
        "url": f"{server.base}/echo",
        "headers": {"X-Token": "t0k", "Host": "evil.example"},
        "body": {"a": [1, 2]},
    }
    result = await run(make_message, logs, spec)
    echo = result.output["body"]
    assert echo["method"] == "POST"
    assert json.loads(echo["body"]) == {"a": [1, 2]}
    assert echo["content_type"] == "application/json"
    assert echo["x_token"] == "t0k"
    assert echo["host"] == f"127.0.0.1:{server.port}"  # the spec cannot set Host


async def test_string_body_sent_as_is(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    spec = {
        "method": "PUT",
        "url": f"{server.base}/echo",
        "body": "raw text",
        "headers": {"Content-Type": "text/plain"},
    }
    result = await run(make_message, logs, spec)
    assert result.output["body"]["body"] == "raw text"
    assert result.output["body"]["content_type"] == "text/plain"


async def test_unexpected_status(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await run(make_message, logs, {"url": f"{server.base}/status/404"})
    assert result.status == "failed"
    assert result.error == "unexpected status 404"
    assert result.output["status_code"] == 404
    assert result.output["body"] == "status"


async def test_expect_status(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    ok = await run(make_message, logs, {"url": f"{server.base}/status/404", "expect_status": [404]})
    assert ok.status == "succeeded"
    not_ok = await run(
        make_message, logs, {"url": f"{server.base}/status/200", "expect_status": [201]}
    )
    assert (not_ok.status, not_ok.error) == ("failed", "unexpected status 200")


async def test_redirect_is_not_followed(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    server.hits.clear()
    result = await run(make_message, logs, {"url": f"{server.base}/redirect"})
    assert (result.status, result.error) == ("failed", "unexpected status 302")
    assert result.output["headers"]["location"] == "/json"
    expected = await run(
        make_message, logs, {"url": f"{server.base}/redirect", "expect_status": [302]}
    )
    assert expected.status == "succeeded"
    assert [hit["path"] for hit in server.hits] == ["/redirect", "/redirect"]


async def test_body_capped(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    policy = ExecutorPolicy(http_allowlist=("127.0.0.1",), max_output_bytes=1000)
    result = await run(make_message, logs, {"url": f"{server.base}/big"}, HttpExecutor(policy))
    assert result.status == "succeeded"
    assert result.output["body"] == "y" * 1000
    assert result.output["truncated"] is True


async def test_head(server: Server, logs: LogCollector, make_message: MessageFactory) -> None:
    result = await run(make_message, logs, {"method": "HEAD", "url": f"{server.base}/json"})
    assert result.status == "succeeded"
    assert result.output["body"] == ""


async def test_cidr_allowlist(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    executor = HttpExecutor(ExecutorPolicy(http_allowlist=("127.0.0.0/8",)))
    result = await run(make_message, logs, {"url": f"{server.base}/json"}, executor)
    assert result.status == "succeeded"


async def test_connection_pinned_to_checked_address(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    """The name is resolved once, by the guard; httpx connects to that IP with Host intact.

    ``api.example.test`` resolves nowhere for real, so a second resolution would fail.
    """
    calls: list[str] = []
    executor = HttpExecutor(
        ExecutorPolicy(http_allowlist=("127.0.0.1",)),
        resolver=fixed_resolver({"api.example.test": ["127.0.0.1"]}, calls),
    )
    url = f"http://user:secret@api.example.test:{server.port}/echo?token=x"
    result = await run(make_message, logs, {"url": url}, executor)
    assert result.status == "succeeded", result
    assert result.output["body"]["host"] == f"api.example.test:{server.port}"
    assert result.output["body"]["path"] == "/echo?token=x"
    assert calls == ["api.example.test"]
    # credentials and query strings stay out of the task log
    assert logs.text("system") == [f"GET http://api.example.test:{server.port}/echo -> 200"]


async def test_hostname_allowlist(
    server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    executor = HttpExecutor(
        ExecutorPolicy(http_allowlist=("API.example.test",)),
        resolver=fixed_resolver({"api.example.test": ["127.0.0.1"]}),
    )
    url = f"http://api.example.test:{server.port}/json"
    result = await run(make_message, logs, {"url": url}, executor)
    assert result.status == "succeeded", result


async def test_https_sni_and_certificate_use_the_hostname(
    tls: Tls, tls_server: Server, logs: LogCollector, make_message: MessageFactory
) -> None:
    """Connected to 127.0.0.1, yet SNI and certificate checks use ``api.example.test``."""
    executor = HttpExecutor(
        ExecutorPolicy(http_allowlist=("127.0.0.1",)),
        resolver=fixed_resolver(
            {"api.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}
        ),
        verify=tls.client_context,
    )
    good = await run(
        make_message, logs, {"url": f"https://api.example.test:{tls_server.port}/json"}, executor
    )
    assert good.status == "succeeded", good
    assert good.output["body"] == {"hello": "world"}
    assert tls_server.sni[-1] == "api.example.test"

    # Same IP, another name: the certificate does not match it, so the request fails.
    wrong = await run(
        make_message, logs, {"url": f"https://other.example.test:{tls_server.port}/json"}, executor
    )
    assert wrong.status == "failed"
    assert wrong.error is not None and "ConnectError" in wrong.error
    assert tls_server.sni[-1] == "other.example.test"


# --- the SSRF guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address_class"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.10:8080/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://2130706433/", "loopback"),  # decimal-encoded 127.0.0.1
        ("http://0x7f.1/", "loopback"),
        ("http://100.64.0.1/", "shared (CGNAT)"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[64:ff9b::a00:1]/", "NAT64 private"),
        ("http://[2002:a00:1::1]/", "6to4 private"),
        ("https://192.0.2.1/", "private"),  # documentation range
    ],
)
async def test_refused_addresses(
    no_traffic: list[httpx.Request],
    logs: LogCollector,
    make_message: MessageFactory,
    url: str,
    address_class: str,
) -> None:
    result = await run(make_message, logs, {"url": url}, HttpExecutor(ExecutorPolicy()))
    assert (result.status, result.reason) == ("failed", "error")
    assert result.error is not None
    assert f"({address_class} address)" in result.error
    assert no_traffic == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://127.0.0.1/file", "must be http or https"),
        ("file:///etc/passwd", "must be http or https"),
        ("gopher://127.0.0.1:6379/_INFO", "must be http or https"),
        ("127.0.0.1/json", "must be http or https"),
        ("http:///nohost", "no host"),
    ],
)
async def test_refused_urls(
    no_traffic: list[httpx.Request],
    logs: LogCollector,
    make_message: MessageFactory,
    url: str,
    fragment: str,
) -> None:
    result = await run(make_message, logs, {"url": url}, HttpExecutor(LOCAL))
    assert result.status == "failed"
    assert result.error is not None and fragment in result.error
    assert no_traffic == []


async def test_any_private_address_refuses_the_name(
    no_traffic: list[httpx.Request], logs: LogCollector, make_message: MessageFactory
) -> None:
    """A name with a public and an internal address (a rebinding setup) is refused whole."""
    executor = HttpExecutor(
        ExecutorPolicy(),
        resolver=fixed_resolver({"rebind.example.test": ["93.184.216.34", "10.0.0.7"]}),
    )
    result = await run(make_message, logs, {"url": "http://rebind.example.test/"}, executor)
    assert result.status == "failed"
    assert result.error is not None and "10.0.0.7 (private address)" in result.error
    assert no_traffic == []


async def test_allowlist_is_per_address(
    no_traffic: list[httpx.Request], logs: LogCollector, make_message: MessageFactory
) -> None:
    executor = HttpExecutor(
        ExecutorPolicy(http_allowlist=("127.0.0.1",)),
        resolver=fixed_resolver({"mixed.example.test": ["127.0.0.1", "10.0.0.7"]}),
    )
    result = await run(make_message, logs, {"url": "http://mixed.example.test/"}, executor)
    assert result.error is not None and "10.0.0.7" in result.error
    assert no_traffic == []


@pytest.mark.parametrize(
    "allowlist", [("169.254.0.0/16",), ("metadata.example.test",), ("0.0.0.0/0",)]
)
async def test_metadata_needs_an_exact_allowlist_entry(
    no_traffic: list[httpx.Request],
    logs: LogCollector,
    make_message: MessageFactory,
    allowlist: tuple[str, ...],
) -> None:
    executor = HttpExecutor(
        ExecutorPolicy(http_allowlist=allowlist),
        resolver=fixed_resolver({"metadata.example.test": ["169.254.169.254"]}),
    )
    result = await run(make_message, logs, {"url": "http://metadata.example.test/"}, executor)
    assert result.error is not None and "cloud metadata" in result.error
    assert no_traffic == []


async def test_unresolvable_host(
    no_traffic: list[httpx.Request], logs: LogCollector, make_message: MessageFactory
) -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    executor = HttpExecutor(ExecutorPolicy(), resolver=failing)
    result = await run(make_message, logs, {"url": "http://nowhere.example.test/"}, executor)
    assert result.error is not None and "cannot resolve host" in result.error
    assert no_traffic == []


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({}, "spec.url"),
        ({"url": "http://x.test/", "method": "TRACE"}, "spec.method"),
        ({"url": "http://x.test/", "expect_status": "200"}, "spec.expect_status"),
        ({"url": "http://x.test/", "headers": ["a"]}, "spec.headers"),
        ({"url": "http://x.test/", "body": {"n": float("nan")}}, "spec.body"),
    ],
)
async def test_bad_specs(
    no_traffic: list[httpx.Request],
    logs: LogCollector,
    make_message: MessageFactory,
    spec: dict[str, Any],
    fragment: str,
) -> None:
    result = await run(make_message, logs, spec)
    assert result.status == "failed"
    assert result.error is not None and fragment in result.error


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert classify_address(ipaddress.ip_address(address)) is None
