"""The container image (Dockerfile, .dockerignore; docs/container.md).

Static checks always run: the Dockerfile is parsed and its rules checked, and .dockerignore is
matched the way Docker and Podman match it. The image itself is built and run with podman when
podman can do it here; without it those tests skip, unless GATEWAY_TEST_REQUIRE_CONTAINER=1
(CI sets it after .ci/install-container), where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent.parent

# The gateway's secret settings (.env.example): none may be set in the image.
SECRET_SETTINGS = ("TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "GATEWAY_API_KEY", "GATEWAY_CALL_TOKEN_SECRET",
                   "GATEWAY_DATABASE_URL")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|AUTH|CREDENTIAL|PRIVATE|DATABASE_URL", re.I)
SECRET_VALUE = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}|://[^/\s:@]+:[^/\s@]+@|-----BEGIN [A-Z ]*PRIVATE KEY")


# --- the Dockerfile, parsed -----------------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comment lines dropped, continuation lines joined
    (https://docs.docker.com/reference/dockerfile/#format)."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation"
    return out


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The build stages, each from its FROM on (global ARGs before the first FROM are dropped)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in parsed:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def key_values(rest: str) -> dict[str, str]:
    """ENV's or ARG's KEY=VALUE pairs (``ARG NAME`` alone: an empty value)."""
    pairs = {}
    for word in shlex.split(rest):
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


def exec_form(rest: str) -> list[str]:
    """A JSON-array (exec form) argument list; fails on the shell form."""
    try:
        words = json.loads(rest)
    except ValueError:
        pytest.fail(f"not in exec form (a JSON array): {rest}")
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), rest
    return words


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def runtime(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def test_the_build_is_multi_stage_a_builder_venv_copied_into_the_runtime(dockerfile, runtime) -> None:
    built = stages(dockerfile)
    assert len(built) >= 2
    builder_from = built[0][0][1].split()
    assert builder_from[-2:] == ["AS", "builder"] or builder_from[-2:] == ["as", "builder"]
    builder_runs = " ".join(rest for keyword, rest in built[0] if keyword == "RUN")
    assert "venv /opt/venv" in builder_runs
    # The project with its PostgreSQL extra, into that venv.
    assert re.search(r"/opt/venv/bin/pip install .*'\.\[postgres\]'", builder_runs), builder_runs
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    # Nothing else of the build (the source tree, pip's cache) reaches the runtime stage.
    assert all(c.startswith("--from=builder /opt/venv ") for c in copies), copies
    env = {k: v for keyword, rest in runtime if keyword == "ENV" for k, v in key_values(rest).items()}
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_the_base_is_an_argument_defaulting_to_a_slim_python_image(dockerfile) -> None:
    # Global ARGs come before the first FROM
    # (https://docs.docker.com/reference/dockerfile/#understand-how-arg-and-from-interact).
    head = dockerfile[:next(i for i, (keyword, _) in enumerate(dockerfile) if keyword == "FROM")]
    base = key_values(dict(head)["ARG"])["BASE_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-[a-z]+)?", base), base
    for stage in stages(dockerfile):
        # Each stage on the same base: the venv links to the base's python.
        assert stage[0][1].split()[0] == "${BASE_IMAGE}"


def test_the_runtime_runs_as_a_non_root_user(runtime) -> None:
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    if not user.isdigit():
        assert re.search(rf"useradd .*\b{user}\b", runs), "the user is not created"
    # Nothing after the last USER switches back to root.
    last_user = max(i for i, (keyword, _) in enumerate(runtime) if keyword == "USER")
    assert "RUN" not in [keyword for keyword, _ in runtime[last_user:]]


def test_the_data_dir_is_a_volume_the_user_owns(runtime) -> None:
    env = {k: v for keyword, rest in runtime if keyword == "ENV" for k, v in key_values(rest).items()}
    data = env["GATEWAY_DATA_DIR"]
    assert data.startswith("/")
    volumes = [v for keyword, rest in runtime if keyword == "VOLUME" for v in exec_form(rest)]
    assert data in volumes
    user = [rest for keyword, rest in runtime if keyword == "USER"][-1].split(":")[0]
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    # A volume takes its owner from the image's directory when the runtime creates it.
    assert re.search(rf"chown {user}(:\w+)? {re.escape(data)}\b", runs), runs


def test_gateway_serve_is_pid_1_in_exec_form_on_all_interfaces_and_PORT(runtime) -> None:
    (entrypoint,) = [exec_form(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    cmd = [exec_form(rest) for keyword, rest in runtime if keyword == "CMD"]
    command = entrypoint + (cmd[-1] if cmd else [])
    assert command[:2] == ["gateway", "serve"]
    # The real CLI parses it: bound to every interface, port left to $PORT, one worker per core.
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0"
    assert args.port is None and args.workers is None
    env = {k: v for keyword, rest in runtime if keyword == "ENV" for k, v in key_values(rest).items()}
    exposed = [rest for keyword, rest in runtime if keyword == "EXPOSE"]
    assert exposed == [env["PORT"]]


def test_sigterm_stops_it_and_the_health_check_asks_healthz_with_python(runtime) -> None:
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    (check,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    options, _, command = check.partition("CMD ")
    assert re.search(r"--timeout=\d+s", options) and re.search(r"--start-period=\d+s", options)
    words = exec_form(command)
    assert words[:2] == ["python3", "-c"]
    assert "urllib.request" in words[2] and "/healthz" in words[2]
    assert "os.environ.get('PORT', '8080')" in words[2], "the check follows PORT"
    compile(words[2], "<HEALTHCHECK>", "exec")  # valid python


def test_no_secret_is_baked_in(dockerfile) -> None:
    for keyword, rest in dockerfile:
        if keyword in ("ENV", "ARG", "LABEL"):
            for key, value in key_values(rest).items():
                assert key not in SECRET_SETTINGS and not SECRET_NAME.search(key), f"{keyword} {key}"
                assert not SECRET_VALUE.search(value) and not SECRET_NAME.search(value), f"{keyword} {key}={value}"
        assert not SECRET_VALUE.search(rest), f"{keyword} {rest}"
        for name in SECRET_SETTINGS:
            assert name not in rest, f"{keyword} {rest}"
        if keyword in ("COPY", "ADD"):
            assert ".env" not in rest and keyword == "COPY", f"{keyword} {rest}"


# --- .dockerignore, matched as Docker matches it -------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match plus ``**`` (any number of directories), as in
    https://docs.docker.com/build/concepts/context/#dockerignore-files."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out, i = out + "[" + ("^" + body[1:] if body[:1] == "^" else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the context leaves ``path`` out: the last rule matching it or a parent decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


@pytest.fixture(scope="module")
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        rules.append((negated, _pattern_regex(pattern.strip("/"))))
    return rules


def test_the_matcher_follows_dockers_rules() -> None:
    rules = [(False, _pattern_regex("**/*.pyc")), (False, _pattern_regex("a")), (True, _pattern_regex("a/keep"))]
    assert ignored("x/y/z.pyc", rules) and ignored("z.pyc", rules) and not ignored("z.py", rules)
    assert ignored("a/b/c", rules) and not ignored("a/keep", rules) and not ignored("ab", rules)


@pytest.mark.parametrize("path", [
    ".git/config", ".venv/bin/python", "gateway-data/calls.sqlite3", "gateway-data/recordings/CA1.wav",
    ".env", ".env.production", "gateway/.env", "examples/.env", "deploy/kubernetes/secrets.env",
    "tls/gateway.key", "demo-call/call.wav",
    "__pycache__/x.cpython-311.pyc", "gateway/__pycache__/app.cpython-311.pyc", "gateway/app.pyc",
    ".pytest_cache/v/cache/nodeids", ".hypothesis/examples/x", "twilio_realtime_gateway.egg-info/PKG-INFO",
    "build/lib/gateway/app.py", "dist/twilio_realtime_gateway-0.1.0.whl",
])
def test_dockerignore_keeps_secrets_state_and_caches_out(path: str, ignore_rules) -> None:
    assert ignored(path, ignore_rules)


def test_dockerignore_keeps_what_the_image_is_built_from(ignore_rules) -> None:
    needed = ["pyproject.toml", "README.md", "LICENSE", ".env.example"]
    needed += [p.relative_to(ROOT).as_posix() for p in (ROOT / "gateway").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    assert "gateway/web/console/static/index.html" in needed  # package data too
    assert [p for p in needed if ignored(p, ignore_rules)] == []


# --- the image, built and run with podman ---------------------------------------------------------

CI_BASE = "localhost/gateway-ci-base:bookworm"  # .ci/install-container makes it
TEST_IMAGE = "localhost/twilio-realtime-gateway:test"


def _podman(*args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ if env is None else env)
    # Podman's network set-up runs iptables, which is in sbin, not always on a PATH.
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def _base_or_skip() -> str:
    """The base image to build on: $GATEWAY_CONTAINER_BASE, the CI's, or the Dockerfile's default,
    whichever podman has; pulling is no test's business."""
    parsed = instructions((ROOT / "Dockerfile").read_text())
    default = next(key_values(rest)["BASE_IMAGE"] for keyword, rest in parsed
                   if keyword == "ARG" and "BASE_IMAGE" in key_values(rest))
    candidates = [c for c in (os.environ.get("GATEWAY_CONTAINER_BASE"), CI_BASE, default) if c]
    why = None
    if shutil.which("podman") is None:
        why = "podman is not installed (.ci/install-container installs it)"
    else:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            why = f"podman does not work here: {info.stderr.strip()[-500:]}"
        else:
            for base in candidates:
                if subprocess.run(["podman", "image", "exists", base], timeout=60).returncode == 0:
                    return base
            why = (f"no base image in podman ({', '.join(candidates)}): run .ci/install-container, "
                   f"or podman pull {default}")
    if os.environ.get("GATEWAY_TEST_REQUIRE_CONTAINER") == "1":
        pytest.fail(f"GATEWAY_TEST_REQUIRE_CONTAINER=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def image() -> str:
    base = _base_or_skip()
    # --format docker: the OCI format has no HEALTHCHECK. After .ci/install-container built the
    # same checkout, every layer is cached and this needs no network.
    _podman("build", "--format", "docker", "--build-arg", f"BASE_IMAGE={base}", "-t", TEST_IMAGE, str(ROOT),
            timeout=900)
    return TEST_IMAGE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Container:
    def __init__(self, name: str, port: int, secrets: dict[str, str]) -> None:
        self.name, self.port, self.secrets = name, port, secrets
        self.url = f"http://127.0.0.1:{port}"

    def exec(self, *command: str, check: bool = True, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
        options = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return _podman("exec", *options, self.name, *command, check=check)

    def logs(self) -> str:
        done = _podman("logs", self.name)
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    port = _free_port()
    name = f"gateway-test-{secrets.token_hex(4)}"
    # Secrets reach the container from podman's environment (`--env NAME` without a value), so
    # they are not on any command line either; random, so a leak is unmistakable.
    secret_env = {"TWILIO_AUTH_TOKEN": secrets.token_hex(16), "GATEWAY_API_KEY": secrets.token_hex(16)}
    settings = {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        # A local model URL: no OPENAI_API_KEY needed, and nothing listens there.
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
    }
    running = Container(name, port, secret_env)
    try:
        _podman("run", "--detach", "--name", name,
                # Published on the loopback only. In its own network namespace the gateway
                # binds 0.0.0.0:$PORT (8080), as the image says.
                "--publish", f"127.0.0.1:{port}:8080",
                # The test runs the health check (podman healthcheck run), not a systemd timer.
                "--health-interval", "disable",
                # As hardened as deploy/kubernetes runs it: a read-only root (podman mounts a
                # tmpfs on /tmp), no capabilities, no privilege escalation. /data is a volume.
                "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                *[f"--env={k}={v}" for k, v in settings.items()], *[f"--env={k}" for k in secret_env],
                image, env={**os.environ, **secret_env})
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(running.url + "/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            state = _podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not answer /healthz (container {state}):\n{running.logs()}")
            time.sleep(0.25)
        yield running
    finally:
        _podman("rm", "--force", "--volumes", name, check=False)


def test_the_container_answers_healthz_and_its_health_check_passes(container: Container) -> None:
    with urllib.request.urlopen(container.url + "/healthz", timeout=5) as answer:
        assert answer.status == 200
        assert json.load(answer)["status"] == "ok"
    inspected = json.loads(_podman("image", "inspect", TEST_IMAGE).stdout)[0]
    test = inspected["Healthcheck"]["Test"]
    assert test[0] == "CMD" and "/healthz" in test[-1]
    assert _podman("healthcheck", "run", container.name, check=False).returncode == 0
    # The same command fails when nothing answers on $PORT: the check can report unhealthy.
    assert container.exec(*test[1:], env={"PORT": "1"}, check=False).returncode != 0


def test_gateway_serve_is_pid_1_and_not_root_and_owns_its_data(container: Container) -> None:
    status = container.exec("cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    assert len(uids) == 4 and "0" not in uids, status
    cmdline = container.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[1:5] == ["/opt/venv/bin/gateway", "serve", "--host", "0.0.0.0"], cmdline
    # The call store is on the /data volume, written by the gateway's user.
    owners = container.exec("stat", "-c", "%u %n", "/data", "/data/calls.sqlite3").stdout.split("\n")
    assert [line.split()[0] for line in owners if line] == [uids[0], uids[0]]
    # The code is root's: the gateway's user cannot change it.
    assert container.exec("touch", "/opt/venv/bin/gateway", check=False).returncode != 0


def test_no_secret_is_in_the_image(container: Container) -> None:
    image_text = _podman("image", "inspect", TEST_IMAGE).stdout + _podman(
        "history", "--no-trunc", "--format", "json", TEST_IMAGE).stdout
    container_text = _podman("inspect", container.name).stdout
    for name, value in container.secrets.items():
        assert f"{name}={value}" in container_text  # the search sees a secret where there is one
        assert value not in image_text and name not in image_text
    env = json.loads(_podman("image", "inspect", TEST_IMAGE).stdout)[0]["Config"]["Env"]
    assert [e for e in env if SECRET_NAME.search(e.split("=")[0])] == []
    assert container.exec("ls", "-A", "/app").stdout == ""  # no .env came with the image


def test_podman_stop_drains_and_exits_0(container: Container) -> None:
    started = time.monotonic()
    # SIGTERM (the image's STOPSIGNAL), then SIGKILL after 30 s: the exit status tells which.
    _podman("stop", "--time", "30", container.name, timeout=60)
    assert time.monotonic() - started < 25
    assert _podman("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip() == "0"
    logs = container.logs()
    assert "draining: not taking new calls; 0 in progress" in logs
    assert "drained: no calls in progress" in logs
