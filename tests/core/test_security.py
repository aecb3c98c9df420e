"""The JWT verifier, key rotation, settings guards, password hashing and opaque tokens.

Tokens are forged with PyJWT from the claims of a real account, so the only thing wrong
with each bad token is the one defect under test: a control test proves the untouched
forgery is accepted. Each defect is checked directly against ``verify_access_token`` and
through the API (``GET /api/v1/me``), where it must answer 401, never 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpx import ASGITransport, AsyncClient, Response
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.app import create_app
from backend.core.errors import InvalidToken
from backend.core.security import (
    API_TOKEN_PREFIX,
    REFRESH_TOKEN_PREFIX,
    AccessClaims,
    hash_secret,
    issue_access_token,
    make_tenant_token,
    parse_tenant_token,
    verify_access_token,
)
from backend.core.settings import Environment, Process, Settings, UnsafeSettings
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, bearer, create_member, login

ME = "/api/v1/me"
OTHER_SECRET = "an-entirely-different-secret-0123456789abcdef"
REQUIRED = ["iss", "aud", "sub", "tid", "role", "exp", "iat", "jti"]

# The HS384/HS512 forgeries use the real (HS256-sized) key on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

# ---------------------------------------------------------------------------- helpers


def payload_for(settings: Settings, account: Account, **overrides: Any) -> dict[str, Any]:
    """The claims the app would issue for ``account``, with ``overrides`` applied."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(account.user_id),
        "tid": str(account.tenant_id),
        "role": account.role,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    payload.update(overrides)
    return payload


def forge(
    settings: Settings,
    payload: dict[str, Any],
    *,
    key: str | None = None,
    algorithm: str = "HS256",
    kid: str | None = "<active>",
) -> str:
    headers = {} if kid is None else {"kid": settings.jwt_kid if kid == "<active>" else kid}
    return jwt.encode(payload, key or settings.jwt_secret, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: object, payload: object, key: str) -> str:
    """An HMAC-SHA256-signed JWT with any header at all (PyJWT would validate it)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def rsa_private_pem() -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def same_claims(verified: AccessClaims, issued: AccessClaims) -> bool:
    """Equal, except that ``exp`` travels in whole seconds."""
    return verified == AccessClaims(
        issued.user_id,
        issued.tenant_id,
        issued.role,
        issued.jti,
        issued.expires_at.replace(microsecond=0),
    )


def assert_401(response: Response, code: str = "invalid_token") -> None:
    assert_error(response, 401, code)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def settings_with(settings: Settings, **changes: Any) -> Settings:
    """A new Settings (re-validated, fresh ``verification_keys``) with ``changes``."""
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of a second app instance running with other settings (same database)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application, client=("203.0.113.7", 40000))
        async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
            yield http


# ---------------------------------------------------------------------------- forged tokens

Forger = Callable[[Settings, Account], str]


def _tampered(settings: Settings, account: Account) -> str:
    genuine = forge(settings, payload_for(settings, account, role="viewer"))
    header, _, signature = genuine.split(".")
    escalated = _b64(json.dumps(payload_for(settings, account, role="owner")).encode())
    return f"{header}.{escalated}.{signature}"


def _without(claim: str) -> Forger:
    def build(settings: Settings, account: Account) -> str:
        payload = payload_for(settings, account)
        del payload[claim]
        return forge(settings, payload)

    return build


BAD_TOKENS: dict[str, Forger] = {
    "alg_none": lambda s, a: jwt.encode(
        payload_for(s, a), "", algorithm="none", headers={"kid": s.jwt_kid}
    ),
    "alg_none_spelled_None": lambda s, a: (
        raw_token({"alg": "None", "kid": s.jwt_kid}, payload_for(s, a), s.jwt_secret).rsplit(
            ".", 1
        )[0]
        + "."
    ),
    "hs512_with_real_key": lambda s, a: forge(s, payload_for(s, a), algorithm="HS512"),
    "hs384_with_real_key": lambda s, a: forge(s, payload_for(s, a), algorithm="HS384"),
    "rs256_header_hmac_signed": lambda s, a: raw_token(
        {"alg": "RS256", "typ": "JWT", "kid": s.jwt_kid}, payload_for(s, a), s.jwt_secret
    ),
    "rs256_real_rsa_key": lambda s, a: jwt.encode(
        payload_for(s, a), rsa_private_pem(), algorithm="RS256", headers={"kid": s.jwt_kid}
    ),
    "other_secret": lambda s, a: forge(s, payload_for(s, a), key=OTHER_SECRET),
    "tampered_payload": _tampered,
    "wrong_audience": lambda s, a: forge(s, payload_for(s, a, aud="another-api")),
    "audience_list_without_ours": lambda s, a: forge(s, payload_for(s, a, aud=["x", "y"])),
    "wrong_issuer": lambda s, a: forge(s, payload_for(s, a, iss="evil")),
    "expired": lambda s, a: forge(
        s, payload_for(s, a, iat=int(time.time()) - 1000, exp=int(time.time()) - 60)
    ),
    "not_yet_valid": lambda s, a: forge(s, payload_for(s, a, nbf=int(time.time()) + 3600)),
    "issued_in_the_future": lambda s, a: forge(s, payload_for(s, a, iat=int(time.time()) + 3600)),
    **{f"missing_{claim}": _without(claim) for claim in REQUIRED},
    "unknown_kid": lambda s, a: forge(s, payload_for(s, a), kid="k-unknown"),
    "no_kid": lambda s, a: forge(s, payload_for(s, a), kid=None),
    "kid_not_a_string": lambda s, a: raw_token(
        {"alg": "HS256", "kid": 1}, payload_for(s, a), s.jwt_secret
    ),
    "header_not_an_object": lambda s, a: raw_token([1, 2], payload_for(s, a), s.jwt_secret),
    "payload_not_an_object": lambda s, a: raw_token(
        {"alg": "HS256", "kid": s.jwt_kid}, ["sub"], s.jwt_secret
    ),
    "sub_not_a_uuid": lambda s, a: forge(s, payload_for(s, a, sub="admin")),
    "sub_not_a_string": lambda s, a: forge(s, payload_for(s, a, sub=12345)),
    "tid_not_a_uuid": lambda s, a: forge(s, payload_for(s, a, tid="acme")),
    "tid_not_a_string": lambda s, a: forge(s, payload_for(s, a, tid=12345)),
    "tid_a_list": lambda s, a: forge(s, payload_for(s, a, tid=[str(a.tenant_id)])),
    "exp_not_a_number": lambda s, a: forge(s, payload_for(s, a, exp="tomorrow")),
    "exp_beyond_any_date": lambda s, a: forge(s, payload_for(s, a, exp=10**20)),
}


async def test_forged_control_token_is_accepted(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    """Proves the forging helpers are right, so every refusal below is about its defect."""
    token = forge(settings, payload_for(settings, owner))

    claims = verify_access_token(settings, token)
    response = await client.get(ME, headers=bearer(token))

    assert (claims.user_id, claims.tenant_id) == (owner.user_id, owner.tenant_id)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(owner.user_id)


@pytest.mark.parametrize("defect", list(BAD_TOKENS))
async def test_defective_token_is_refused(
    client: AsyncClient, settings: Settings, owner: Account, defect: str
) -> None:
    token = BAD_TOKENS[defect](settings, owner)

    with pytest.raises(InvalidToken):
        verify_access_token(settings, token)
    assert_401(await client.get(ME, headers=bearer(token)))


GARBAGE = [
    "",
    "garbage",
    "a.b",
    "a.b.c",
    "a.b.c.d",
    "....",
    "é.x.y",
    "e30.e30.",
    "eyJhbGciOiJIUzI1NiJ9..",
    "bnVsbA.e30.sig",
    "x" * 5000,
    "bat_not_an_api_token",
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_refused_by_the_verifier(settings: Settings, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(settings, garbage)


@pytest.mark.parametrize("garbage", [g for g in GARBAGE if g.isascii() and g])
async def test_garbage_bearer_answers_401(client: AsyncClient, garbage: str) -> None:
    response = await client.get(ME, headers=bearer(garbage))

    assert_error(response, 401, "invalid_token")


async def test_valid_token_with_extra_or_cut_parts_is_refused(
    client: AsyncClient, owner: Account
) -> None:
    for broken in (owner.access_token + ".x", owner.access_token[:-3], owner.access_token + "A"):
        assert_401(await client.get(ME, headers=bearer(broken)))
    assert (await client.get(ME, headers=owner.headers)).status_code == 200


async def test_missing_or_non_bearer_authorization(client: AsyncClient, owner: Account) -> None:
    assert_401(await client.get(ME), code="unauthenticated")
    basic = await client.get(ME, headers={"Authorization": f"Basic {owner.access_token}"})
    assert_401(basic, code="unauthenticated")


async def test_token_for_a_tenant_the_user_is_not_in_is_refused(
    client: AsyncClient, settings: Settings, owner: Account, stranger: Account
) -> None:
    token = forge(settings, payload_for(settings, owner, tid=str(stranger.tenant_id)))

    # The signature is genuine, so the verifier alone accepts it ...
    assert verify_access_token(settings, token).tenant_id == stranger.tenant_id
    # ... but the membership check behind it does not.
    assert_401(await client.get(ME, headers=bearer(token)))


async def test_token_for_an_unknown_user_is_refused(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    token = forge(settings, payload_for(settings, owner, sub=str(uuid.uuid4())))

    assert_401(await client.get(ME, headers=bearer(token)))


async def test_role_claim_is_not_trusted(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    """A validly signed token claiming ``owner`` still acts with the member's real role."""
    viewer = await create_member(client, owner, "viewer")
    token = forge(settings, payload_for(settings, viewer, role="owner"))

    me = await client.get(ME, headers=bearer(token))
    audit = await client.get("/api/v1/audit", headers=bearer(token))

    assert me.status_code == 200, me.text
    assert me.json()["role"] == "viewer"
    assert_error(audit, 403, "forbidden")


def test_issued_token_shape(settings: Settings) -> None:
    user_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    token, issued = issue_access_token(
        settings, user_id=user_id, tenant_id=tenant_id, role="editor"
    )

    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert header["kid"] == settings.jwt_kid
    assert set(REQUIRED) <= set(payload)
    assert payload["exp"] - payload["iat"] == settings.access_token_ttl_seconds
    assert payload["jti"] == issued.jti
    assert same_claims(verify_access_token(settings, token), issued)


# ---------------------------------------------------------------------------- key rotation


def test_key_rotation_direct(settings: Settings) -> None:
    old_key, new_key = "old-signing-key-" + "o" * 32, "new-signing-key-" + "n" * 32
    before = settings_with(settings, jwt_secret=old_key, jwt_kid="k-old", jwt_previous_keys="{}")
    during = settings_with(
        settings,
        jwt_secret=new_key,
        jwt_kid="k-new",
        jwt_previous_keys=json.dumps({"k-old": old_key}),
    )
    after = settings_with(settings, jwt_secret=new_key, jwt_kid="k-new", jwt_previous_keys="{}")
    old_token, old_claims = issue_access_token(
        before, user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="viewer"
    )
    new_token, new_claims = issue_access_token(
        during, user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="viewer"
    )

    assert jwt.get_unverified_header(new_token)["kid"] == "k-new"
    assert same_claims(verify_access_token(during, old_token), old_claims)
    assert same_claims(verify_access_token(during, new_token), new_claims)
    assert same_claims(verify_access_token(after, new_token), new_claims)
    with pytest.raises(InvalidToken, match="Unknown signing key"):
        verify_access_token(after, old_token)
    with pytest.raises(InvalidToken):
        verify_access_token(before, new_token)
    # A previous key only verifies tokens labelled with its own kid.
    mislabelled = jwt.encode(
        jwt.decode(old_token, options={"verify_signature": False}),
        old_key,
        algorithm="HS256",
        headers={"kid": "k-new"},
    )
    with pytest.raises(InvalidToken):
        verify_access_token(during, mislabelled)


async def test_key_rotation_through_the_api(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    new_key = "rotated-signing-key-" + uuid.uuid4().hex
    rotated = settings_with(
        settings,
        jwt_secret=new_key,
        jwt_kid="k-rotated",
        jwt_previous_keys=json.dumps({settings.jwt_kid: settings.jwt_secret}),
    )
    retired = settings_with(settings, jwt_secret=new_key, jwt_kid="k-rotated")

    async with app_client(rotated) as rotated_client:
        # A session issued before the rotation keeps working ...
        assert (await rotated_client.get(ME, headers=owner.headers)).status_code == 200
        # ... and new sessions are signed with the new key.
        fresh = await login(rotated_client, owner.email, owner.password)
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == "k-rotated"
        fresh_me = await rotated_client.get(ME, headers=bearer(fresh["access_token"]))
        assert fresh_me.status_code == 200, fresh_me.text
    # The old deployment does not know the new key.
    assert_401(await client.get(ME, headers=bearer(fresh["access_token"])))

    async with app_client(retired) as retired_client:
        assert_401(await retired_client.get(ME, headers=owner.headers))
        fresh_me = await retired_client.get(ME, headers=bearer(fresh["access_token"]))
        assert fresh_me.status_code == 200, fresh_me.text


# ---------------------------------------------------------------------------- settings guards


@pytest.mark.parametrize("environment", list(Environment))
def test_settings_refuse_a_short_jwt_secret(environment: Environment) -> None:
    with pytest.raises(ValidationError, match="shorter than 32 bytes"):
        Settings(
            _env_file=None,
            environment=environment,
            jwt_secret="x" * 31,
            app_db_password="a-real-database-password",
        )


def test_settings_refuse_a_short_previous_key() -> None:
    with pytest.raises(ValidationError, match="'old'"):
        Settings(_env_file=None, jwt_previous_keys=json.dumps({"old": "short"}))


def test_settings_count_bytes_not_characters() -> None:
    accepted = Settings(_env_file=None, jwt_secret="é" * 16)

    assert accepted.verification_keys[accepted.jwt_kid] == "é" * 16
    with pytest.raises(ValidationError):
        Settings(_env_file=None, jwt_secret="é" * 15 + "x")


def test_settings_accept_a_32_byte_secret() -> None:
    settings = Settings(_env_file=None, jwt_secret="s" * 32, jwt_kid="k9")

    assert settings.verification_keys == {"k9": "s" * 32}


# The development secret Baton once shipped as a constant: it is public, in git history.
PUBLISHED_DEV_SECRET = "baton-dev-only-secret-change-me-0123456789abcdef"


def test_settings_refuse_production_without_secrets() -> None:
    """Production generates nothing; each process refuses the unset secrets it uses."""
    no_jwt = Settings(
        _env_file=None, environment=Environment.production, app_db_password="a-real-password"
    )
    assert no_jwt.jwt_secret == ""
    with pytest.raises(UnsafeSettings, match="BATON_JWT_SECRET"):
        no_jwt.refuse_unsafe_for(Process.api)
    no_database = Settings(_env_file=None, environment=Environment.production, jwt_secret="p" * 48)
    with pytest.raises(UnsafeSettings, match="BATON_APP_DB_PASSWORD"):
        no_database.refuse_unsafe_for(Process.engine)
    with pytest.raises(UnsafeSettings, match="BATON_SECRETS_KEK"):
        no_database.refuse_unsafe_for(Process.api)
    with pytest.raises(UnsafeSettings, match="BATON_WORKER_TRANSIT_KEY"):
        no_database.refuse_unsafe_for(Process.worker)


def test_settings_accept_a_real_secret_in_production() -> None:
    settings = Settings(
        _env_file=None,
        environment=Environment.production,
        jwt_secret="p" * 48,
        app_db_password="a-real-database-password",
        secrets_kek="cHJvZHVjdGlvbi1zZWNyZXRzLWtlay0zMi1ieXRlcyE=",
        worker_transit_key="cHJvZHVjdGlvbi10cmFuc2l0LWtleS0zMi1ieXRlcyE=",
    )

    settings.refuse_unsafe_for(Process.api, Process.engine, Process.database)
    assert settings.verification_keys == {settings.jwt_kid: "p" * 48}
    assert not settings.uses_development_jwt_secret


def test_dev_secrets_are_random_per_data_dir_and_kept_private(tmp_path: Path) -> None:
    first = Settings(_env_file=None, data_dir=tmp_path / "one")
    again = Settings(_env_file=None, data_dir=tmp_path / "one")
    other = Settings(_env_file=None, data_dir=tmp_path / "two")

    assert first.jwt_secret == again.jwt_secret  # kept between runs of one installation
    assert first.jwt_secret != other.jwt_secret
    assert first.app_db_password == again.app_db_password != other.app_db_password
    assert PUBLISHED_DEV_SECRET not in (first.jwt_secret, other.jwt_secret)
    assert len(first.jwt_secret.encode()) >= 32 and first.uses_development_jwt_secret
    for name in ("jwt-secret", "app-db-password"):
        assert (tmp_path / "one" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "one" / "jwt-secret").read_text().strip() == first.jwt_secret


def test_a_configured_secret_is_no_development_secret(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, jwt_secret="c" * 40)
    assert settings.jwt_secret == "c" * 40 and not settings.uses_development_jwt_secret
    assert not (tmp_path / "jwt-secret").exists()


def test_test_environment_secrets_are_random_per_process_and_not_written(
    tmp_path: Path,
) -> None:
    one = Settings(_env_file=None, environment=Environment.test, data_dir=tmp_path)
    two = Settings(_env_file=None, environment=Environment.test, data_dir=tmp_path)
    assert one.jwt_secret == two.jwt_secret and one.uses_development_jwt_secret
    assert one.jwt_secret != PUBLISHED_DEV_SECRET
    assert list(tmp_path.iterdir()) == []


async def test_a_token_forged_with_the_published_dev_secret_is_refused(
    client: AsyncClient, settings: Settings, owner: Account
) -> None:
    """The secret every old installation shared: anyone could mint a token for any tenant."""
    for kid in (settings.jwt_kid, None):
        token = forge(settings, payload_for(settings, owner), key=PUBLISHED_DEV_SECRET, kid=kid)
        response = await client.get("/api/v1/jobs", headers=bearer(token))
        assert_error(response, 401, "invalid_token")
    genuine = forge(settings, payload_for(settings, owner))
    assert (await client.get("/api/v1/jobs", headers=bearer(genuine))).status_code == 200


# ---------------------------------------------------------------------------- passwords


async def test_passwords_are_stored_as_argon2id(
    client: AsyncClient, settings: Settings, owner: Account, owner_engine: AsyncEngine
) -> None:
    member = await create_member(client, owner, "viewer")
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT email, password_hash FROM users WHERE email IN (:a, :b)"),
                {"a": owner.email, "b": member.email},
            )
        ).all()

    assert {email for email, _ in rows} == {owner.email, member.email}
    for _, password_hash in rows:
        assert password_hash.startswith("$argon2id$"), password_hash
        assert f"m={settings.argon2_memory_cost},t={settings.argon2_time_cost}" in password_hash
        assert owner.password not in password_hash
    # Same password, different salts.
    assert rows[0][1] != rows[1][1]


# ---------------------------------------------------------------------------- opaque tokens


@pytest.mark.parametrize("prefix", [REFRESH_TOKEN_PREFIX, API_TOKEN_PREFIX])
def test_tenant_token_round_trip(prefix: str) -> None:
    tenant_id = uuid.uuid4()
    raw = make_tenant_token(prefix, tenant_id)

    assert raw.startswith(f"{prefix}_{tenant_id.hex}_")
    assert parse_tenant_token(prefix, raw) == (tenant_id, hash_secret(raw))
    assert make_tenant_token(prefix, tenant_id) != raw


def test_hash_secret_is_sha256_hex() -> None:
    assert hash_secret("abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "brt",
        "brt_",
        "brt__" + "s" * 43,
        "brt_zz_" + "s" * 43,
        f"brt_{uuid.uuid4().hex}_short",
        f"bat_{uuid.uuid4().hex}_" + "s" * 43,
        f"brt{uuid.uuid4().hex}" + "s" * 43,
    ],
)
def test_parse_tenant_token_refuses_malformed(raw: str) -> None:
    with pytest.raises(InvalidToken):
        parse_tenant_token(REFRESH_TOKEN_PREFIX, raw)
