"""Console settings: the common ones, where the services it calls answer, and sign-in."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from liftstack_shared.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    port: int = 8080

    # Where the console calls the other services (with the signed-in user's JWT):
    # ingest for the Events page, experiments for campaigns and the loop (connections
    # is the common LIFTSTACK_CONNECTIONS_URL).
    ingest_url: str = "http://127.0.0.1:8102"
    experiments_url: str = "http://127.0.0.1:8106"

    # The console's own public origin (scheme://host[:port]): the OIDC redirect URI
    # is built from it, state-changing requests must come from it (CSRF), and cookies
    # are Secure unless it is plain-HTTP localhost.
    console_public_url: str = "http://127.0.0.1:8080"

    # Sign-in through the OpenID Connect provider at LIFTSTACK_OIDC_ISSUER
    # (authorization code + PKCE). The console is a confidential client.
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid profile liftstack"
    # Some providers take the API audience as an authorize parameter ("audience"
    # for Auth0, "resource" per RFC 8707); empty = the provider's default.
    oidc_audience_param: str = ""

    # Demo sign-in (`./liftstack up` only): the console signs tokens for one demo
    # workspace with a locally generated key whose public JWKS it serves at
    # /demo/jwks.json; services then trust that issuer. Off everywhere else.
    demo_signin: bool = False
    demo_workspace: str = "ws-demo"
    demo_signing_key_file: str = ""

    # The console's own MongoDB database (sessions, sign-in flows); default
    # "<mongo_db>_console". Separate from the services' databases: FerretDB on SQLite
    # has one writer per database file.
    console_mongo_db: str = ""

    @property
    def console_origin(self) -> str:
        parts = urlsplit(self.console_public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @property
    def cookie_secure(self) -> bool:
        parts = urlsplit(self.console_public_url)
        return not (parts.scheme == "http" and (parts.hostname or "") in ("localhost", "127.0.0.1", "::1"))

    @property
    def oidc_signin(self) -> bool:
        return bool(self.oidc_client_id)

    @property
    def console_db(self) -> str:
        return self.console_mongo_db or f"{self.mongo_db}_console"
