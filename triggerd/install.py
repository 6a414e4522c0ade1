"""A system install, laid out by ``triggerd init``: config, rules, workflows, state, units.

What a beamline server gets (under ``prefix``, ``/`` for a real install; every path
written, in the config and the units too, is under it, so a test or a chroot can lay
out a whole install in a scratch directory):

- ``etc/triggerd/triggerd.toml``: the shipped config with absolute paths, the state
  directory ``0750`` so the service's group reaches the control socket;
- ``etc/triggerd/workflows/``: the example workflows;
- ``etc/triggerd/triggers/``: no active rule (the daemon would start runs nobody asked
  for), the example rules in ``examples/`` to copy from;
- ``var/lib/triggerd/``: the state directory, owned by the service user;
- ``etc/systemd/system/triggerd.service`` and ``triggerd-worker@.service`` whose
  ExecStart is the ``triggerd`` of the environment that runs ``init``;
- the service user and group ``triggerd`` (only for ``prefix = /``, as root).

It is idempotent and never overwrites: a file that exists is kept, and said so.
The shipped files come from :func:`shipped`: ``<prefix>/share/triggerd`` of the Python
environment (a wheel installs them there) or the source checkout (an editable install).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from triggerd.errors import ConfigError

__all__ = ["SERVICE_USER", "Step", "lay_out", "shipped"]

SERVICE_USER = "triggerd"
_TEMPLATE_BIN = "/opt/triggerd/venv/bin/"  # what the shipped units' ExecStart names


@dataclass(frozen=True)
class Step:
    """One thing ``init`` did or left: ``what`` is ``created``, ``kept`` or ``skipped``."""

    what: str
    path: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.what:<8} {self.path}" + (f"  ({self.note})" if self.note else "")


def shipped() -> Path:
    """The directory holding the shipped config/, systemd/, triggers/ and workflows/."""
    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "triggerd",
        Path(sys.prefix) / "share" / "triggerd",
        Path(__file__).resolve().parent.parent,
    ]
    for candidate in candidates:
        if (candidate / "config" / "triggerd.toml").is_file() and (
            candidate / "systemd" / "triggerd.service"
        ).is_file():
            return candidate
    raise ConfigError(
        "the shipped examples, config template and units are not installed (looked in "
        + ", ".join(str(c) for c in candidates)
        + "): reinstall triggerd with pip from its wheel or sdist"
    )


class _Layout:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.etc = prefix / "etc" / "triggerd"
        self.state = prefix / "var" / "lib" / "triggerd"
        self.units = prefix / "etc" / "systemd" / "system"
        self.config = self.etc / "triggerd.toml"


def lay_out(prefix: Path, *, bin_dir: Path, create_user: bool = True) -> Iterator[Step]:
    """Lay the install out under ``prefix``; yields each step as it is done."""
    source, at = shipped(), _Layout(prefix.absolute())
    for directory in (
        at.etc,
        at.etc / "workflows",
        at.etc / "triggers",
        at.etc / "triggers" / "examples",
        at.units,
    ):
        yield _directory(directory, 0o755)
    yield _file(
        at.config, _config_text((source / "config" / "triggerd.toml").read_text(), at), 0o644
    )
    for example in sorted((source / "workflows").glob("*.py")):
        yield _file(at.etc / "workflows" / example.name, example.read_text(), 0o644)
    for example in sorted(
        [*(source / "triggers").glob("*.toml"), *(source / "triggers" / "examples").glob("*.toml")]
    ):
        yield _file(at.etc / "triggers" / "examples" / example.name, example.read_text(), 0o644)
    for unit in ("triggerd.service", "triggerd-worker@.service"):
        yield _file(
            at.units / unit, _unit_text((source / "systemd" / unit).read_text(), at, bin_dir), 0o644
        )
    yield from _service_user(at, create_user)
    yield _directory(at.state, 0o750, owner=_owner() if at.prefix == Path("/") else None)


def _config_text(template: str, at: _Layout) -> str:
    """The shipped config with the install's absolute paths."""
    values = {
        "state_dir": f'"{at.state}"',
        "workflows": f'["{at.etc / "workflows"}"]',
        "triggers": f'["{at.etc / "triggers"}"]',
        "# state_dir_mode": '"0750"',
    }
    text = template
    for key, value in values.items():
        text, count = re.subn(
            rf"(?m)^{re.escape(key)} = .*$", f"{key.removeprefix('# ')} = {value}", text, count=1
        )
        if count != 1:
            raise ConfigError(f"the shipped config template has no line '{key} = ...' to fill in")
    header = (
        f"# Written by `triggerd init`. The daemon reads it as {at.config}: paths are absolute,\n"
        "# the state directory 0750 so members of the triggerd group reach the control socket.\n"
    )
    return header + text


def _unit_text(template: str, at: _Layout, bin_dir: Path) -> str:
    """A shipped unit with ExecStart at this environment's triggerd and the install's paths."""
    text = template.replace(_TEMPLATE_BIN, f"{bin_dir}/")
    if at.prefix != Path("/"):
        text = text.replace("/etc/triggerd/", f"{at.etc}/").replace(
            "/var/lib/triggerd", str(at.state)
        )
    return text


def _directory(path: Path, mode: int, owner: tuple[int, int] | None = None) -> Step:
    if path.is_dir():
        return Step("kept", f"{path}/", "exists")
    path.mkdir(parents=True, mode=mode)
    path.chmod(mode)  # whatever the umask
    if owner is not None:
        os.chown(path, *owner)
    return Step(
        "created", f"{path}/", f"mode {mode:04o}" + (f", owner {SERVICE_USER}" if owner else "")
    )


def _file(path: Path, text: str, mode: int) -> Step:
    try:
        with open(path, "x", encoding="utf-8") as out:  # never over an operator's file
            out.write(text)
    except FileExistsError:
        return Step("kept", str(path), "exists, not overwritten")
    path.chmod(mode)
    return Step("created", str(path))


def _owner() -> tuple[int, int] | None:
    try:
        return pwd.getpwnam(SERVICE_USER).pw_uid, grp.getgrnam(SERVICE_USER).gr_gid
    except KeyError:
        return None


def _service_user(at: _Layout, create: bool) -> Iterator[Step]:
    useradd = [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        "/var/lib/triggerd",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        SERVICE_USER,
    ]
    if _owner() is not None:
        yield Step("kept", f"user {SERVICE_USER}", "exists")
    elif not create or at.prefix != Path("/") or os.geteuid() != 0:
        why = (
            "--no-user"
            if not create
            else "under --prefix"
            if at.prefix != Path("/")
            else "not root"
        )
        yield Step("skipped", f"user {SERVICE_USER}", f"{why}; as root: {' '.join(useradd)}")
    else:
        done = subprocess.run(useradd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(
                f"could not create the service user: {' '.join(useradd)}: {done.stderr.strip()}"
            )
        yield Step("created", f"user {SERVICE_USER}", f"system user and group, home {at.state}")


def next_steps(prefix: Path) -> str:
    """What the operator does after ``init``, as the README's install section says."""
    at = _Layout(prefix.absolute())
    sudo = "sudo " if os.geteuid() != 0 and shutil.which("sudo") else ""
    return "\n".join(
        [
            "next:",
            f"  {sudo}systemctl daemon-reload && {sudo}systemctl enable --now triggerd",
            (
                f"  {sudo}usermod -aG {SERVICE_USER} $USER     "
                "# then log in again: triggerctl reaches the socket"
            ),
            (
                f"  cp {at.etc}/triggers/examples/incoming.toml {at.etc}/triggers/  "
                "# a first rule: edit its roots"
            ),
            f"  triggerctl --config {at.config} status"
            if at.prefix != Path("/")
            else "  triggerctl status",
        ]
    )
