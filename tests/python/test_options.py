"""tests/python/test_options.py — num_returns, runtime_env and placement
groups of `import loom`, against a real local cluster (2 nodes of 2 CPUs,
for the module).  Every wait is bounded.
"""
from __future__ import annotations

import gc
import sys

import cloudpickle
import pytest

import loom

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 30


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("loom") / "state"
    loom.init("local", num_cpus=2, num_nodes=2, state_dir=str(state))
    yield
    loom.shutdown()


# ---- num_returns ---------------------------------------------------------------

@loom.remote(num_returns=3)
def three(x):
    return x, [x, x + 1], {"x": (x,)}


@loom.remote
def pair(a, b):
    return (b, a)


@loom.remote
def add(a, b):
    return a + b


def test_num_returns_gives_one_ref_per_value():
    a, b, c = three.remote(5)
    assert loom.get(a, timeout=T) == 5
    assert loom.get([b, c], timeout=T) == [[5, 6], {"x": (5,)}]
    # through .options, and each output as an argument of another task
    x, y = pair.options(num_returns=2).remote("left", "right")
    del_ref = loom.get(add.remote(x, y), timeout=T)
    assert del_ref == "rightleft"
    ready, _ = loom.wait([x, y], num_returns=2, timeout=T)
    assert len(ready) == 2


def test_num_returns_outputs_outlive_each_other():
    refs = three.remote(1)
    first = refs[0]
    del refs
    gc.collect()
    assert loom.get(first, timeout=T) == 1


def test_num_returns_wrong_count_and_errors():
    a, b = pair.options(num_returns=2).remote(1, 2)
    assert loom.get([a, b], timeout=T) == [2, 1]
    bad = three.options(num_returns=2).remote(0)
    with pytest.raises(loom.TaskError) as e:
        loom.get(bad[1], timeout=T)
    assert "num_returns=2" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError):
        pair.options(num_returns=0)
    with pytest.raises(ValueError):
        loom.c_function("/nonexistent.so", "f", num_returns=2)


@loom.remote
class Splitter:
    def __init__(self):
        self.calls = 0

    @loom.method(num_returns=2)
    def split(self, text):
        self.calls += 1
        head, _, tail = text.partition(" ")
        return head, tail

    def triple(self, x):
        return x, x * 2, x * 3


def test_num_returns_of_actor_methods():
    s = Splitter.remote()
    head, tail = s.split.remote("hello big world")          # @loom.method(num_returns=2)
    assert loom.get([head, tail], timeout=T) == ["hello", "big world"]
    a, b, c = s.triple.options(num_returns=3).remote(7)      # .options on the method
    assert loom.get([a, b, c], timeout=T) == [7, 14, 21]
    one = s.triple.remote(1)                                  # default: one ref, the tuple
    assert loom.get(one, timeout=T) == (1, 2, 3)   # one ref: the tuple itself
    bad = s.triple.options(num_returns=2).remote(1)
    with pytest.raises(loom.TaskError, match="num_returns=2"):
        loom.get(bad[0], timeout=T)
    with pytest.raises(ValueError):
        s.triple.options(num_returns=0)
    with pytest.raises(ValueError):
        s.triple.options(num_cpus=2)
    with pytest.raises(ValueError):
        loom.method(num_returns=-1)


# ---- runtime_env -----------------------------------------------------------------

def make_working_dir(root, modname):
    wd = root / "wd"
    (wd / "pkg").mkdir(parents=True)
    (wd / f"{modname}.py").write_text("VALUE = 42\n"
                                      "def hello():\n"
                                      "    with open('data.txt') as f:\n"
                                      "        return f.read()\n")
    (wd / "pkg" / "__init__.py").write_text("NAME = 'pkg'\n")
    (wd / "data.txt").write_text("from the working dir")
    (wd / "link.txt").symlink_to(wd / "data.txt")   # inside: kept (made relative)
    return wd


@loom.remote
def use_working_dir(modname):
    import importlib
    import os
    mod = importlib.import_module(modname)
    import pkg
    with open("link.txt") as f:
        linked = f.read()
    return [mod.VALUE, mod.hello(), pkg.NAME, linked, os.environ.get("LOOM_TEST_VAR")]


@loom.remote
def read_env():
    import os
    return [os.environ.get("LOOM_TEST_VAR"), os.getcwd()]


@loom.remote
class EnvActor:
    def __init__(self, modname):
        import importlib
        self.mod = importlib.import_module(modname)

    def value(self):
        import os
        return [self.mod.VALUE, os.environ.get("LOOM_TEST_VAR")]


def test_working_dir_and_env_vars(tmp_path):
    modname = f"loom_wd_mod_{tmp_path.name.replace('-', '_')}"
    wd = make_working_dir(tmp_path, modname)
    with pytest.raises(ImportError):
        __import__(modname)
    env = {"working_dir": str(wd), "env_vars": {"LOOM_TEST_VAR": "set"}}
    refs = [use_working_dir.options(runtime_env=env).remote(modname) for _ in range(4)]
    for got in loom.get(refs, timeout=T):
        assert got == [42, "from the working dir", "pkg", "from the working dir", "set"]
    # env_vars and the directory are for the call only
    var, cwd = loom.get(read_env.remote(), timeout=T)
    assert var is None and "loom-wd-" not in cwd
    actor = EnvActor.options(runtime_env=env).remote(modname)
    assert loom.get(actor.value.remote(), timeout=T) == [42, "set"]
    loom.kill(actor)


@loom.remote
def use_modules(pkg, single):
    import importlib
    import os
    p = importlib.import_module(pkg)
    m = importlib.import_module(single)
    return [p.helper(2), m.TRIPLE(3), "loom-wd-" in os.getcwd()]


def test_py_modules(tmp_path):
    tag = tmp_path.name.replace("-", "_")
    pkg, single = f"loom_pm_pkg_{tag}", f"loom_pm_single_{tag}"
    (tmp_path / "src" / pkg).mkdir(parents=True)
    (tmp_path / "src" / pkg / "__init__.py").write_text("from .impl import helper\n")
    (tmp_path / "src" / pkg / "impl.py").write_text("def helper(x):\n    return x * 100\n")
    (tmp_path / "src" / f"{single}.py").write_text("def TRIPLE(x):\n    return 3 * x\n")
    with pytest.raises(ImportError):
        __import__(pkg)
    env = {"py_modules": [str(tmp_path / "src" / pkg), str(tmp_path / "src" / f"{single}.py")]}
    # on sys.path of the nodes, not the current directory
    assert loom.get(use_modules.options(runtime_env=env).remote(pkg, single), timeout=T) == [200, 9, False]
    # a module object works as well as its path
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        mod = __import__(pkg)
        env2 = {"py_modules": [mod, str(tmp_path / "src" / f"{single}.py")]}
        assert loom.get(use_modules.options(runtime_env=env2).remote(pkg, single), timeout=T)[:2] == [200, 9]
    finally:
        sys.path.remove(str(tmp_path / "src"))
    with pytest.raises(ValueError, match="neither a directory nor a .py file"):
        use_modules.options(runtime_env={"py_modules": [str(tmp_path / "nope")]})
    with pytest.raises(TypeError):
        use_modules.options(runtime_env={"py_modules": "not-a-list"})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / f"{single}.py").write_text("")
    with pytest.raises(ValueError, match="two entries"):
        use_modules.options(runtime_env={"py_modules": [str(tmp_path / "src" / f"{single}.py"),
                                                        str(tmp_path / "other" / f"{single}.py")]}).remote(pkg, single)


def test_working_dir_refuses_escaping_symlinks(tmp_path):
    from loom import _runtime_env
    wd = tmp_path / "wd"
    wd.mkdir()
    (tmp_path / "secret").write_text("outside")
    (wd / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(ValueError, match="leaves it"):
        _runtime_env.pack_working_dir(str(wd))
    with pytest.raises(ValueError, match="over 10 bytes"):
        (wd / "escape").unlink()
        (wd / "big").write_bytes(b"x" * 11)
        _runtime_env.pack_working_dir(str(wd), limit=10)


def unsafe_archive(kind):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, data=b"x", link=None):
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        add("ok.py")
        if kind == "dotdot":
            add("sub/../../evil.py")
        elif kind == "absolute":
            add("/tmp/loom-evil.py")
        elif kind == "symlink":
            add("sub/link", link="../../outside")
        elif kind == "abs_symlink":
            add("link", link="/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "abs_symlink"])
def test_unpack_refuses_unsafe_entries(tmp_path, kind):
    from loom import _wire
    with pytest.raises(ValueError, match="unsafe"):
        _wire.unpack_working_dir(unsafe_archive(kind), str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()
    assert not (tmp_path.parent / "evil.py").exists()
    _wire.unpack_working_dir(unsafe_archive("none"), str(tmp_path / "ok"))
    assert (tmp_path / "ok" / "ok.py").read_bytes() == b"x"


def test_init_runtime_env(tmp_path):
    """loom.init(runtime_env=) applies to every task of the driver."""
    import subprocess
    import textwrap
    modname = "loom_wd_init_mod"
    wd = make_working_dir(tmp_path, modname)
    script = textwrap.dedent(f"""
        import loom
        loom.init("local", num_cpus=1, state_dir={str(tmp_path / "s")!r},
                  runtime_env={{"working_dir": {str(wd)!r}, "env_vars": {{"LOOM_TEST_VAR": "init"}}}})
        @loom.remote
        def f():
            import os, {modname}
            return [{modname}.VALUE, {modname}.hello(), os.environ["LOOM_TEST_VAR"]]
        print(loom.get(f.remote(), timeout=30))
        loom.shutdown()
    """)
    import os
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(loom.__file__))))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("[42, 'from the working dir', 'init']"), out.stdout
