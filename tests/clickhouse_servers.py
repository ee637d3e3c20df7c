"""Real ClickHouse servers for the tests: Debian's clickhouse-server, each started with a
throw-away config under a directory the caller owns, on loopback ports nobody else holds.

`make test` installs clickhouse-server when it is missing (as it does chromium). Servers are
never shared between pytest-xdist workers: each worker that needs one starts its own, on ports
picked free by binding them first, so workers never collide.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

SERVER = Path("/usr/sbin/clickhouse-server")
CLUSTER = "meterhub_test"
# non-UTC server zones, so that no answer can lean on the server's zone being UTC; Lord Howe's
# daylight saving shift is 30 minutes, which catches code that assumes whole hours
SINGLE_TIMEZONE = "Australia/Lord_Howe"
# the cluster's shards: host and server zone (two zones, so no answer can lean on either)
CLUSTER_SHARDS = (("127.0.0.2", "Asia/Kolkata"), ("127.0.0.3", "America/New_York"))
CLUSTER_HOSTS = tuple(host for host, _ in CLUSTER_SHARDS)
START_TIMEOUT = 15.0
#: a second user, with a password (every server has it): tests of stores whose URL holds a
#: password use it. The password holds what a URL must percent-encode ('/', '@', '#').
SECRET_USER = "meterhub_secret"
SECRET_PASSWORD = "Zq8s3cr3t/Vw7k@Kp9m#Xy4t"
# another worker may take a port between our bind test and the server's own bind: try again
START_ATTEMPTS = 3

Settings = Mapping[str, str | int]


class ClickHouseError(RuntimeError):
    """A query refused by the server (its message in the text), or a server that won't start."""


@dataclass
class ClickHouseServer:
    host: str
    http_port: int
    tcp_port: int
    dir: Path
    process: subprocess.Popen[bytes]
    # written into its config as a macro, so that start-up can tell this server's answer from
    # that of another server which took the port first (another xdist worker's, say)
    instance: str = ""
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=30.0)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def query(self, sql: str, settings: Settings | None = None) -> str:
        """Run one statement over HTTP and return the body (TabSeparated unless the SQL says
        FORMAT); settings go as URL parameters, as ClickHouse's HTTP interface takes them."""
        answer = self._client.post("/", content=sql.encode(), params=dict(settings or {}))
        if answer.status_code != 200:
            raise ClickHouseError(f"{self.host}:{self.http_port}: {answer.text.strip()}")
        return answer.text

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ClickHouseServer:
        """Return once the server answers `SELECT 1`; else stop it and raise with the tail of
        its error log."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                errors = error_tail(self.dir)
                self.stop()
                kind = PortTaken if "Address already in use" in errors else ClickHouseError
                raise kind(
                    f"clickhouse-server on {self.host}:{self.http_port} exited "
                    f"({self.process.returncode}) while starting; its error log ends:\n{errors}"
                )
            try:
                if self._probe() == f"1\t{self.instance}":
                    return self
            except (httpx.TransportError, ClickHouseError):
                pass
            except BaseException:
                self.stop()
                raise
            if time.monotonic() > deadline:
                self.stop()
                raise ClickHouseError(
                    f"clickhouse-server on {self.host}:{self.http_port} did not answer within "
                    f"{timeout:.0f} s; its error log ends:\n{error_tail(self.dir)}"
                )
            time.sleep(0.02)

    def _probe(self) -> str:
        # a short timeout: a port held by something that never answers must not stall us
        answer = self._client.post(
            "/",
            content=b"SELECT 1, any(substitution) FROM system.macros"
            b" WHERE macro = 'meterhub_instance'",
            timeout=1.0,
        )
        if answer.status_code != 200:
            raise ClickHouseError(answer.text)
        return answer.text.strip("\n")

    def stop(self) -> None:
        """Kill the server and drop its data (config and logs stay for a post-mortem).

        SIGKILL, not SIGTERM: a graceful shutdown takes 0.8 s on 18.16 and there is nothing
        to keep."""
        self._client.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for name in ("data", "tmp", "user_files"):
            shutil.rmtree(self.dir / name, ignore_errors=True)


def start_single(dir: Path) -> ClickHouseServer:
    """One server on 127.0.0.1, in a non-UTC zone."""
    for attempt in range(START_ATTEMPTS):
        http_port, tcp_port = free_ports(["127.0.0.1"])
        try:
            return start_server(dir, "127.0.0.1", http_port, tcp_port, SINGLE_TIMEZONE)
        except PortTaken:
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def start_cluster(dir: Path) -> list[ClickHouseServer]:
    """Two servers, one shard each, on 127.0.0.2 and 127.0.0.3 with the same ports (as hosts
    of a real cluster would have), each knowing both as the cluster `meterhub_test`."""
    for attempt in range(START_ATTEMPTS):
        http_port, tcp_port = free_ports(CLUSTER_HOSTS)
        remote = cluster_xml(CLUSTER_HOSTS, tcp_port)
        servers: list[ClickHouseServer] = []
        try:
            # both launched before either is awaited: the two start-ups overlap
            for index, (host, zone) in enumerate(CLUSTER_SHARDS):
                shard_dir = dir / f"shard{index + 1}"
                instance = uuid.uuid4().hex
                process = launch(shard_dir, host, http_port, tcp_port, zone, remote, instance)
                servers.append(
                    ClickHouseServer(host, http_port, tcp_port, shard_dir, process, instance)
                )
            for server in servers:
                server.wait_ready()
            return servers
        except BaseException as problem:
            stop_all(servers)
            if not isinstance(problem, PortTaken) or attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def stop_all(servers: Sequence[ClickHouseServer]) -> None:
    for server in servers:
        server.stop()


class PortTaken(ClickHouseError):
    """The server could not bind a port we had found free: someone took it meanwhile."""


def start_server(
    dir: Path, host: str, http_port: int, tcp_port: int, timezone: str, remote_servers: str = ""
) -> ClickHouseServer:
    """Start a server with a config written under `dir` and wait until it answers."""
    instance = uuid.uuid4().hex
    process = launch(dir, host, http_port, tcp_port, timezone, remote_servers, instance)
    return ClickHouseServer(host, http_port, tcp_port, dir, process, instance).wait_ready()


def launch(
    dir: Path,
    host: str,
    http_port: int,
    tcp_port: int,
    timezone: str,
    remote_servers: str,
    instance: str,
) -> subprocess.Popen[bytes]:
    if not SERVER.exists():
        raise ClickHouseError(
            f"{SERVER} is missing: `make test` installs it (apt-get install clickhouse-server)"
        )
    # absolute: the config names its paths from it, and the server runs in it
    dir = dir.resolve()
    # a fresh directory per start: an earlier attempt's status file or data must not linger
    shutil.rmtree(dir, ignore_errors=True)
    (dir / "log").mkdir(parents=True)
    (dir / "users.xml").write_text(USERS_XML.replace("{secret_user}", SECRET_USER)
                                   .replace("{secret_password}", escape(SECRET_PASSWORD)))
    config = dir / "config.xml"
    config.write_text(
        CONFIG_XML.format(
            dir=escape(str(dir)),
            host=host,
            http_port=http_port,
            tcp_port=tcp_port,
            timezone=timezone,
            remote_servers=remote_servers,
            instance=instance,
        )
    )
    main = threading.main_thread()
    with (dir / "log" / "console.log").open("wb") as console:
        return subprocess.Popen(
            [str(SERVER), f"--config-file={config}"],
            cwd=dir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            # out of our process group (a Ctrl-C reaches pytest, which then stops it cleanly)
            start_new_session=True,
            preexec_fn=die_with_parent if threading.current_thread() is main else None,
        )


def free_ports(hosts: Sequence[str]) -> tuple[int, int]:
    """Two distinct ports free on every one of `hosts` (a bind test; the caller retries if
    someone takes one before the server binds it)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < 2:
            # the kernel picks a port free on the first address; it must be free on the rest too
            probe = socket.socket()
            held.append(probe)
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
            if all(bindable(host, port) for host in hosts[1:]):
                ports.append(port)
    finally:
        for probe in held:
            probe.close()
    return ports[0], ports[1]


def bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def cluster_xml(hosts: Sequence[str], tcp_port: int) -> str:
    shards = "".join(
        f"<shard><replica><host>{host}</host><port>{tcp_port}</port></replica></shard>"
        for host in hosts
    )
    return f"<remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>"


def error_tail(dir: Path, lines: int = 20) -> str:
    text = ""
    for name in ("error.log", "console.log"):
        with contextlib.suppress(OSError):
            text += (dir / "log" / name).read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


# looked up here, not in the forked child, where loading a library may deadlock
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: the kernel kills the server when the process that started
    it dies, so a crashed or killed pytest worker leaves no server behind. (Linux ties this to
    the starting thread, hence only set from the main thread.)"""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# settings for the throw-away servers; everything written under {dir}, nothing read from /etc
CONFIG_XML = """<yandex>
  <logger>
    <level>warning</level>
    <log>{dir}/log/server.log</log>
    <errorlog>{dir}/log/error.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>{host}</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>{timezone}</timezone>
  <!-- the package's defaults are sized for a dedicated host: 5-8 GB of caches -->
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <macros><meterhub_instance>{instance}</meterhub_instance></macros>
  {remote_servers}
</yandex>
"""

USERS_XML = """<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <!-- a shard connects to the other over TCP; the default 50 ms to connect failed
           ("All connection tries failed") while a full test run loaded both cores -->
      <connect_timeout_with_failover_ms>2000</connect_timeout_with_failover_ms>
      <connections_with_failover_max_tries>5</connections_with_failover_max_tries>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.0/8</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <{secret_user}>
      <password>{secret_password}</password>
      <networks>
        <ip>127.0.0.0/8</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </{secret_user}>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""
