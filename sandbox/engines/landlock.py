"""Make a worker process unable to write to any file, with Linux Landlock (ctypes, no deps).

DuckDB's lock-down leaves one write path (measured, duckdb 2.0): an *allowed* path is also
writable, so ``COPY … TO '<source file>' (USE_TMP_FILE false)`` could overwrite a dataset if
a statement ever got past the statement checks. Landlock closes it below DuckDB: after
``restrict_writes()`` this process (and anything it starts) can create, write, truncate,
rename or remove no file anywhere, and (ABI ≥ 4) neither bind nor connect TCP sockets.
Reading is left to DuckDB's ``allowed_paths``. Descriptors opened before (the pipes to the
gateway) keep working.

Needs Linux ≥ 5.13 with Landlock enabled; ``restrict_writes`` returns the ABI version it
enforced, or 0 when the kernel has none (the worker then runs without this layer, and says
so in its ``limits`` report).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1

# filesystem rights (ABI version that introduced them)
_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1  # ABI 4

_WRITES_V1 = (
    _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK
    | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM
)  # fmt: skip


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock (or off Linux)."""
    calls = _SYSCALLS.get(platform.machine())
    if not sys.platform.startswith("linux") or calls is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(calls[0], None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


_RULE_PATH_BENEATH = 1


def restrict_writes(beneath: str | None = None) -> int:
    """Forbid this process every file write and TCP socket; the ABI enforced (0: none).

    With ``beneath`` (an existing directory): every write is forbidden but below it (the
    sandbox's sorter writes its copies there and nowhere else)."""
    abi = abi_version()
    if abi == 0:
        return 0
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    handled = _WRITES_V1
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    if abi >= 4:
        attr = struct.pack("<QQ", handled, _NET_BIND_TCP | _NET_CONNECT_TCP)
    else:
        attr = struct.pack("<Q", handled)
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(create, buffer, ctypes.c_size_t(len(attr)), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        if beneath is not None:
            _allow_beneath(libc, add_rule, ruleset, beneath, handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(restrict_self, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        libc.close(ruleset)
    return abi


def _allow_beneath(libc: ctypes.CDLL, add_rule: int, ruleset: int, path: str, rights: int) -> None:
    """Grant ``rights`` below directory ``path`` in ``ruleset`` (struct
    landlock_path_beneath_attr: u64 allowed_access, s32 parent_fd, packed)."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = struct.pack("<Qi", rights, fd)
        buffer = ctypes.create_string_buffer(attr, len(attr))
        if libc.syscall(add_rule, ruleset, _RULE_PATH_BENEATH, buffer, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_add_rule failed")
    finally:
        os.close(fd)
