"""The production topology: PostgreSQL, Redis, Celery, two servers and nginx with TLS.

See :mod:`tests.live.harness` for what it is for and how tests use it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.live.deployment import (
    ALWAYS_OPEN,
    FRONT_DESK,
    PYTHON,
    REPO,
    Deployment,
    clean_environment,
    makefile_command,
)
from tests.live.netfaults import SmtpSink, TcpProxy, TwilioRest
from tests.live.processes import (
    START_TIMEOUT_S,
    HarnessError,
    ManagedProcess,
    free_port,
    http_get,
    port_open,
    wait_until,
)

POSTGRES_PORT = 5432
TOPOLOGY_RECOGNISER = "whisper"
"""The offline recogniser the topology runs (a deployment at scale runs Deepgram): the embedded
default, Whisper, the recogniser that takes whole intakes. PocketSphinx, used here at first
because it is cheap, was measured deaf on these calls ("book an appointment" decoded to no
words in 1-2 of 8 concurrent calls). Pass ``STT_PROVIDER=...`` to :class:`ProductionTopology`
to run another."""


class ProductionTopology(Deployment):
    """PostgreSQL, Redis, Celery worker and beat, two servers and nginx with TLS."""

    def __init__(self, tmp: Path, **extra_env: str) -> None:
        super().__init__(tmp)
        self.database = "live_" + secrets.token_hex(4)
        self.redis_port = free_port()
        self.nginx_port = free_port()
        self.ports = {"a": free_port(), "b": free_port()}
        self.public_base_url = f"https://127.0.0.1:{self.nginx_port}"
        self.base_url = self.public_base_url
        self.auth_token = secrets.token_hex(16)
        self.cert = tmp / "tls" / "cert.pem"
        self.key = tmp / "tls" / "key.pem"
        self.proxy: TcpProxy | None = None
        self.smtp: SmtpSink | None = None
        self.account_sid = "AC" + secrets.token_hex(16)
        self.twilio: TwilioRest | None = None
        self.redis: ManagedProcess | None = None
        self.servers: dict[str, ManagedProcess] = {}
        self._extra_env = {"STT_PROVIDER": TOPOLOGY_RECOGNISER, **extra_env}
        self._database_created = False

    # --- environment ----------------------------------------------------------------------

    def _environment(self, database_port: int) -> dict[str, str]:
        assert self.smtp is not None and self.twilio is not None
        return clean_environment(
            APP_ENV="production",
            SECRET_KEY=secrets.token_urlsafe(64),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{database_port}/{self.database}",
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            FIELD_ENCRYPTION_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            BLIND_INDEX_KEY=secrets.token_urlsafe(40),
            TWILIO_ACCOUNT_SID=self.account_sid,
            TWILIO_AUTH_TOKEN=self.auth_token,
            TWILIO_API_BASE_URL=self.twilio.base_url,
            PUBLIC_BASE_URL=self.public_base_url,
            FRONT_DESK_NUMBER=FRONT_DESK,
            CLINIC_OPENING_HOURS=ALWAYS_OPEN,
            EMAIL_URL=self.smtp.url,
            SSL_CERT_FILE=str(self.cert),
            **self._extra_env,
        )

    def caller_env(self) -> dict[str, str]:
        # The caller and probe read PostgreSQL directly, so they work while the product's
        # link through the proxy is cut (staff's view of the rows, after the fact).
        return {**self.env, "DATABASE_URL": self._direct_database_url()}

    def _direct_database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{POSTGRES_PORT}/{self.database}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        ensure_postgres()
        nginx = ensure_nginx()
        self._make_certificate()
        self._create_database()
        self.proxy = TcpProxy(POSTGRES_PORT)
        self.smtp = SmtpSink()
        self.twilio = TwilioRest(account_sid=self.account_sid, auth_token=self.auth_token)
        # Servers, worker and beat reach PostgreSQL through the proxy (cut_database()).
        self.env = self._environment(self.proxy.port)
        self.start_redis()
        direct = self.caller_env()
        self._manage(["migrate", "--no-input"], direct)
        self._manage(["collectstatic", "--no-input", "--verbosity", "0"], direct)
        # The demo clinic's providers and calendar, which the scenarios book into. seed_demo
        # refuses production (it creates sign-ins with known passwords), so it runs with the
        # same keys and database as a development process: the data is the same.
        self._manage(["seed_demo"], {**direct, "APP_ENV": "development"})
        self.spawn("worker", makefile_command("worker"), self.env)
        beat = makefile_command("beat") + ["--schedule", str(self.tmp / "beat-schedule")]
        self.spawn("beat", beat, self.env)
        for name, port in self.ports.items():
            command = makefile_command("run", HOST="127.0.0.1", PORT=str(port))
            self.servers[name] = self.spawn(f"server-{name}", command, self.env)
        for name in self.ports:
            self.wait_ready(name)
        self.spawn("nginx", self._nginx_argv(nginx), self.env)
        wait_until(
            lambda: self._public_ready(),
            timeout_s=30,
            what="nginx to serve /health/ready over TLS",
        )

    def stop(self) -> None:
        super().stop()
        if self.proxy is not None:
            self.proxy.close()
        if self.smtp is not None:
            self.smtp.close()
        if self.twilio is not None:
            self.twilio.close()
        if self._database_created:
            _psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def wait_ready(self, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait for server ``name`` to answer ``/health/ready`` with 200."""
        managed = self.servers[name]

        def ready() -> bool:
            if not managed.running():
                raise HarnessError(f"server {name} exited {managed.process.returncode}")
            return http_get(self.server_url(name) + "/health/ready", timeout_s=3)[0] == 200

        wait_until(ready, timeout_s=timeout_s, what=f"server {name} to be ready")

    def restart_server(self, name: str) -> None:
        """Start server ``name`` again on its port (after :meth:`sigterm` or :meth:`kill9`)."""
        old = self.servers[name]
        if old.running():
            old.stop()
        command = makefile_command("run", HOST="127.0.0.1", PORT=str(self.ports[name]))
        self.servers[name] = self.spawn(f"server-{name}-again", command, self.env)
        self.wait_ready(name)

    def server_ports(self) -> dict[str, int]:
        return dict(self.ports)

    def _public_ready(self) -> bool:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self.ssl_context()),
        )
        try:
            with opener.open(self.public_base_url + "/health/ready", timeout=3) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _manage(self, args: list[str], env: Mapping[str, str]) -> None:
        done = subprocess.run(  # noqa: S603 (argv built by the harness)
            [PYTHON, "manage.py", *args],
            env=dict(env),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise HarnessError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")

    # --- Redis ----------------------------------------------------------------------------

    def start_redis(self) -> None:
        """Start (or restart) the throwaway redis-server on its port."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError("redis-server is not installed (Debian package redis-server)")
        argv = [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no"]
        self.redis = self.spawn("redis", argv, clean_environment())
        wait_until(lambda: port_open(self.redis_port), timeout_s=15, what="redis-server")

    def stop_redis(self) -> None:
        """Stop the redis-server (SIGTERM, no persistence: it comes back empty)."""
        if self.redis is not None:
            self.redis.stop(timeout_s=10)
            self.processes.remove(self.redis)
            self.redis = None

    # --- the database ---------------------------------------------------------------------

    def cut_database(self) -> None:
        """Make PostgreSQL unreachable for the product (connections reset, new ones refused)."""
        assert self.proxy is not None
        self.proxy.cut()

    def restore_database(self) -> None:
        assert self.proxy is not None
        self.proxy.restore()

    def _create_database(self) -> None:
        _psql(f'CREATE DATABASE "{self.database}"')
        self._database_created = True

    # --- TLS and nginx --------------------------------------------------------------------

    def _make_certificate(self) -> None:
        self.cert.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [  # noqa: S607 (openssl from PATH)
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],  # fmt: skip
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _nginx_argv(self, nginx: str) -> list[str]:
        prefix = self.tmp / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            nginx_config(
                prefix=prefix,
                port=self.nginx_port,
                answer_port=self.ports["a"],
                stream_port=self.ports["b"],
                cert=self.cert,
                key=self.key,
            )
        )
        return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]


def nginx_config(
    *, prefix: Path, port: int, answer_port: int, stream_port: int, cert: Path, key: Path
) -> str:
    """nginx as the deployment's TLS edge: the stream to one server, the rest to the other.

    ``proxy_set_header`` in a ``location`` replaces the inherited list, so the forwarded
    headers are written out in both locations.
    """
    forwarded = """
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;"""
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream answer_server {{ server 127.0.0.1:{answer_port}; }}
    upstream stream_server {{ server 127.0.0.1:{stream_port}; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /voice/stream/ {{
            proxy_pass http://stream_server;{forwarded}
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location / {{
            proxy_pass http://answer_server;{forwarded}
        }}
    }}
}}
"""


# --- machine services ------------------------------------------------------------------------


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def ensure_nginx() -> str:
    """The nginx binary, installing the Debian package when missing (as espeak-ng is)."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return candidate
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*_sudo(), "apt-get", "install", "-y", "-qq", "nginx"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:  # noqa: S603
        subprocess.run([*_sudo(), "apt-get", "update", "-qq"], env=env, timeout=600, check=True)  # noqa: S603
        subprocess.run(install, env=env, timeout=600, check=True, capture_output=True)  # noqa: S603
    if not Path("/usr/sbin/nginx").exists():
        raise HarnessError("nginx could not be installed (apt-get install nginx)")
    return "/usr/sbin/nginx"


def ensure_postgres() -> None:
    """PostgreSQL on 127.0.0.1:5432 (started with the Debian cluster tools when down)."""
    if port_open(POSTGRES_PORT):
        return
    versions = sorted(Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").exists() else []
    if not versions:
        raise HarnessError("PostgreSQL is not installed (Debian package postgresql)")
    start = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", "start"]
    subprocess.run(  # noqa: S603
        [*_sudo(), *start],
        check=True,
        timeout=120,
    )
    wait_until(lambda: port_open(POSTGRES_PORT), timeout_s=30, what="PostgreSQL")


def _psql(statement: str) -> None:
    import psycopg

    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{POSTGRES_PORT}/postgres", autocommit=True
    ) as connection:
        connection.execute(statement.encode())  # our own DDL, no input
