"""The client's cache of pickled functions (``handoffd.code_cache``): whatever a function's pickle
is made of changes, ``values.dumps_code`` returns what a fresh cloudpickle returns, and an
unchanged function is not pickled again."""

from __future__ import annotations

import pickle
import random
import sys
import types
from typing import Any

import cloudpickle
import pytest

from handoffd import code_cache, values

SOURCE = '''
import math

K = 1
L = [1, 2]
D = {"a": 1}
T = (1, "x")

def helper(x):
    return x + K

def uses_helper(x):
    return helper(x) * 2

def uses_all(x, y=10, *, z=100):
    """doc"""
    return x + K + sum(L) + D["a"] + len(T) + y + z + int(abs(math.sqrt(4)))

def uses_len(x):
    return len(x)

def recursive(n):
    return 0 if n == 0 else 1 + recursive(n - 1)

def make(k):
    def inner(x):
        return x + k
    def bump():
        nonlocal k
        k += 1
    return inner, bump
'''


def _space() -> dict[str, Any]:
    """A fresh module namespace named __main__: its functions pickle by value, as a script's."""
    space: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(SOURCE, "<user script>", "exec"), space)
    return space


@pytest.fixture(autouse=True)
def fresh_cache() -> Any:
    code_cache.clear()
    yield
    code_cache.clear()


def same_as_fresh(fn: Any) -> bytes:
    """dumps_code(fn) equals a fresh cloudpickle of fn (and loads to a function that behaves)."""
    data = values.dumps_code(fn)
    assert data == values._dumps_code(fn)
    return data


def hits_of(fn: Any) -> int:
    before = code_cache.hits
    same_as_fresh(fn)
    return code_cache.hits - before


def test_an_unchanged_function_is_pickled_once_and_its_bytes_reused():
    space = _space()
    fn = space["uses_all"]
    first = same_as_fresh(fn)
    before = code_cache.hits
    assert values.dumps_code(fn) is first  # the same bytes object: not pickled again
    assert code_cache.hits == before + 1
    assert pickle.loads(first)(1) == fn(1)


@pytest.mark.parametrize(
    "change",
    [
        "space['K'] = 2",  # a global rebound
        "space['L'].append(5)",  # a global list changed in place
        "space['D']['a'] = 7",  # a global dict changed in place
        "space['D']['b'] = 7",  # ... a key added
        "space['T'] = (1, 'x', 3)",  # a global tuple replaced
        "space['math'] = __import__('cmath')",  # a global module rebound
        "fn.__defaults__ = (20,)",
        "fn.__kwdefaults__['z'] = 200",
        "fn.__code__ = (lambda x, y=10, *, z=100: -x).__code__",
        "fn.__doc__ = 'new doc'",
        "fn.__dict__['tag'] = 1",
        "fn.__qualname__ = 'renamed'",
        "fn.__name__ = 'other'",  # each field read as an atom without value() (cli13)
        "fn.__annotations__['x'] = 'int'",
        "space['__file__'] = '/elsewhere/script.py'",  # a base global cloudpickle keeps
    ],
)
def test_any_change_to_what_the_pickle_holds_pickles_again(change):
    space = _space()
    fn = space["uses_all"]
    old = same_as_fresh(fn)
    assert hits_of(fn) == 1
    exec(change, {"space": space, "fn": fn})
    new = values.dumps_code(fn)
    assert new != old
    assert new == values._dumps_code(fn)
    assert pickle.loads(new)(1) == fn(1)
    assert hits_of(fn) == 1  # and the new pickle is kept


def test_a_redefined_function_is_a_new_function():
    space = _space()
    old = same_as_fresh(space["uses_len"])
    exec("def uses_len(x):\n    return len(x) + 1\n", space)
    new = same_as_fresh(space["uses_len"])
    assert new != old
    assert pickle.loads(new)("ab") == 3


def test_a_helper_function_s_global_and_a_shadowed_builtin_count():
    space = _space()
    fn = space["uses_helper"]
    same_as_fresh(fn)
    space["K"] = 5  # read by helper, not by uses_helper itself
    assert pickle.loads(same_as_fresh(fn))(1) == 12
    shadow = space["uses_len"]
    same_as_fresh(shadow)
    space["len"] = lambda x: 42  # a module global now shadows the builtin the code names
    assert pickle.loads(same_as_fresh(shadow))("ab") == 42
    del space["len"]
    assert pickle.loads(same_as_fresh(shadow))("ab") == 2


def test_closures_each_keep_their_own_values_and_a_changed_cell_pickles_again():
    space = _space()
    one, bump = space["make"](1)
    two, _ = space["make"](2)
    assert pickle.loads(same_as_fresh(one))(0) == 1
    assert pickle.loads(same_as_fresh(two))(0) == 2
    assert hits_of(one) == 1
    bump()
    assert hits_of(one) == 0
    assert pickle.loads(values.dumps_code(one))(0) == 2


def test_recursion_is_read_once():
    fn = _space()["recursive"]
    same_as_fresh(fn)
    assert hits_of(fn) == 1
    assert pickle.loads(values.dumps_code(fn))(3) == 3


class Settings:
    def __init__(self) -> None:
        self.scale = 1


def test_what_a_reading_cannot_vouch_for_is_pickled_every_time():
    space = _space()
    space["CFG"] = Settings()  # an instance: its pickle may depend on anything
    exec("def scaled(x):\n    return x * CFG.scale\n", space)
    fn = space["scaled"]
    same_as_fresh(fn)
    assert hits_of(fn) == 0
    space["CFG"].scale = 3
    assert pickle.loads(same_as_fresh(fn))(2) == 6
    space["PKG"] = sys.modules["json"]  # a package: cloudpickle lists its imported submodules
    exec("def dumps(x):\n    return PKG.dumps(x)\n", space)
    assert hits_of(space["dumps"]) == 0
    assert hits_of(space["dumps"]) == 0


def by_reference(x):
    return x + 1


def test_a_module_function_pickled_by_reference_then_by_value_once_registered():
    first = same_as_fresh(by_reference)
    assert hits_of(by_reference) == 1
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        second = same_as_fresh(by_reference)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert second != first
    assert same_as_fresh(by_reference) == first


def test_a_dead_function_leaves_the_cache():
    space = _space()
    fn = space["make"](1)[0]
    same_as_fresh(fn)
    key = id(fn)
    assert key in code_cache._cache
    del fn, space
    import gc

    gc.collect()
    assert key not in code_cache._cache


def test_not_functions_go_straight_to_cloudpickle():
    for obj in (len, Settings, types.SimpleNamespace(a=1), (by_reference, 1)):
        assert values.dumps_code(obj) == values._dumps_code(obj)
    assert not code_cache._cache


def test_random_changes_never_leave_a_stale_pickle():
    rng = random.Random(1313)
    space = _space()
    closures = [space["make"](k) for k in range(3)]
    functions = [space[n] for n in ("uses_all", "uses_helper", "uses_len", "recursive")]
    functions += [inner for inner, _ in closures]
    changes = [
        lambda: space.__setitem__("K", rng.choice([1, 2, 3])),
        lambda: space["L"].append(rng.randrange(3)),
        lambda: space["L"].pop() if space["L"] else None,
        lambda: space["D"].__setitem__(rng.choice("ab"), rng.randrange(3)),
        lambda: space.__setitem__("T", rng.choice([(1, "x"), (2,), ()])),
        lambda: rng.choice(closures)[1](),
        lambda: setattr(space["uses_all"], "__defaults__", (rng.randrange(3),)),
        lambda: space.__setitem__("helper", rng.choice([space["helper"], abs])),
        lambda: None,
    ]
    reused = code_cache.hits
    for _ in range(400):
        rng.choice(changes)()
        fn = rng.choice(functions)
        assert values.dumps_code(fn) == values._dumps_code(fn)
    assert code_cache.hits > reused  # the cache was used along the way


def test_the_same_code_with_the_same_packages_is_the_same_bytes_object():
    """A W3 loop ships one function with one package per call: its packaged code is built once
    (so the call payload's head is found without hashing new bytes), and rebuilt when either
    the function's pickle or the packages change."""
    space = _space()
    fn = space["uses_all"]
    shas = ("a" * 64,)
    first = values.dumps_code(fn, shas)
    assert first == values._PACKAGED + b"a" * 64 + b"\n" + values._dumps_code(fn)
    assert values.dumps_code(fn, shas) is first
    other = values.dumps_code(fn, ("b" * 64,))
    assert other == values._PACKAGED + b"b" * 64 + b"\n" + values._dumps_code(fn)
    space["K"] = 2  # the function's pickle changes
    changed = values.dumps_code(fn, shas)
    assert changed == values._PACKAGED + b"a" * 64 + b"\n" + values._dumps_code(fn)
    assert changed != first
    assert pickle.loads(changed[changed.index(b"\n") + 1 :])(1) == fn(1)


# -- the quick proof: a function pickled by value whose reading holds only immutable objects --

QUICK_SOURCE = """
N = 3
S = "s"
T2 = (1, (2, "x"), frozenset({4}))

def plain(x, y=5):
    return x + N + len(S) + len(T2) + y

def nested(x):
    def inner():
        return x + N
    return inner()

def outer(k):
    def inner(x):
        return x + k
    def set_k(v):
        nonlocal k
        k = v
    return inner, set_k
"""


def _quick_space() -> dict[str, Any]:
    space: dict[str, Any] = {"__name__": "__main__", "__file__": "/home/u/script.py"}
    exec(compile(QUICK_SOURCE, "<user script>", "exec"), space)
    return space


def quick_hits_of(fn: Any) -> int:
    before = code_cache.quick_hits
    same_as_fresh(fn)
    return code_cache.quick_hits - before


def test_a_function_of_immutable_objects_is_proven_current_by_identity():
    space = _quick_space()
    for fn in (space["plain"], space["nested"], space["outer"](2)[0]):
        first = same_as_fresh(fn)
        assert code_cache._cache[id(fn)][3] is not None  # a quick proof was taken
        before = code_cache.quick_hits
        assert values.dumps_code(fn) is first
        assert code_cache.quick_hits == before + 1


@pytest.mark.parametrize(
    "change",
    [
        "space['N'] = 4",  # a global rebound
        "space['N'] = 3.0",  # ... to an equal value of another type
        "space['S'] = ''.join(['s'])",  # ... to an equal value, another object
        "space['T2'] = (1, (2, 'y'), frozenset({4}))",  # a nested tuple replaced
        "space['N'] = [3]",  # ... to a mutable value (the reading decides from then on)
        "del space['N']",  # a global removed
        "space['len'] = lambda v: 0",  # a builtin shadowed by a new global
        "space['__file__'] = '/elsewhere/script.py'",  # a base global cloudpickle keeps
        "space['__package__'] = 'pkg'",
        "fn.__defaults__ = (6,)",  # a default changed
        "fn.__defaults__ = ([5],)",  # ... to a mutable one
        "fn.__kwdefaults__ = {'z': 1}",
        "fn.__doc__ = 'doc'",
        "fn.__dict__['tag'] = 1",  # the same (empty) dict, now holding an attribute
        "fn.__annotations__['x'] = 'int'",  # ... the same annotations dict
        "fn.__code__ = (lambda x, y=5: -x).__code__",
        "fn.__name__ = 'other'",
        "fn.__qualname__ = 'other'",
        "fn.__module__ = 'elsewhere'",
    ],
)
def test_any_change_to_a_quickly_proven_function_pickles_again(change):
    space = _quick_space()
    fn = space["plain"]
    old = same_as_fresh(fn)
    assert quick_hits_of(fn) == 1
    exec(change, {"space": space, "fn": fn})
    new = values.dumps_code(fn)
    assert new == values._dumps_code(fn)
    if change != "space['S'] = ''.join(['s'])":
        assert new != old
    assert hits_of(fn) == 1  # the new pickle is kept


def test_a_changed_closure_cell_and_an_edited_nested_function_pickle_again():
    space = _quick_space()
    inner, set_k = space["outer"](2)
    old = same_as_fresh(inner)
    assert quick_hits_of(inner) == 1
    set_k(3)  # the cell now holds another value
    new = same_as_fresh(inner)
    assert new != old and pickle.loads(new)(1) == 4
    set_k([1])  # ... a mutable one: no quick proof, the reading decides
    assert same_as_fresh(inner) != new
    assert quick_hits_of(inner) == 0
    fn = space["nested"]
    old = same_as_fresh(fn)
    assert quick_hits_of(fn) == 1
    # the nested function edited: the outer function's code object changes with it
    edited = "def nested(x):\n    def inner():\n        return x + N + 1\n    return inner()\n"
    codes = compile(edited, "<user script>", "exec").co_consts
    fn.__code__ = next(c for c in codes if isinstance(c, types.CodeType))
    new = same_as_fresh(fn)
    assert new != old and pickle.loads(new)(1) == fn(1) == 5


def test_a_module_registered_by_value_is_proven_by_its_registration():
    name = "quick_registered_mod"
    module = types.ModuleType(name)
    exec(compile(QUICK_SOURCE, "<registered>", "exec"), module.__dict__)
    sys.modules[name] = module
    cloudpickle.register_pickle_by_value(module)
    try:
        fn = module.plain
        by_value = same_as_fresh(fn)
        assert quick_hits_of(fn) == 1
        cloudpickle.unregister_pickle_by_value(module)  # by reference from now on
        by_reference = same_as_fresh(fn)
        assert by_reference != by_value and len(by_reference) < len(by_value)
        cloudpickle.register_pickle_by_value(module)
        assert same_as_fresh(fn) == by_value
        assert quick_hits_of(fn) == 1
        del module.plain  # no longer found in its module: still by value, proven by a reading
        assert same_as_fresh(fn) == by_value
        module.plain = fn
        sys.modules[name] = types.ModuleType(name)  # another module under that name
        assert same_as_fresh(fn) == values._dumps_code(fn)
    finally:
        if name in cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES:
            cloudpickle.unregister_pickle_by_value(module)
        sys.modules.pop(name, None)


def test_random_changes_never_leave_a_stale_quickly_proven_pickle():
    rng = random.Random(1717)
    space = _quick_space()
    closures = [space["outer"](k) for k in range(3)]
    functions = [space["plain"], space["nested"]] + [inner for inner, _ in closures]
    changes = [
        lambda: space.__setitem__("N", rng.choice([3, 4, 3.0, [3], (3,), "3"])),
        lambda: space.__setitem__("S", rng.choice(["s", "t", "".join(["s"])])),
        lambda: space.pop("N", None) if rng.random() < 0.3 else space.__setitem__("N", 3),
        lambda: space.__setitem__("len", abs) if rng.random() < 0.5 else space.pop("len", None),
        lambda: rng.choice(closures)[1](rng.choice([0, 1, 2, [1], (1, 2)])),
        lambda: setattr(space["plain"], "__defaults__", rng.choice([(5,), (6,), ((5,),), ([5],)])),
        lambda: setattr(space["plain"], "__doc__", rng.choice([None, "d", "e"])),
        lambda: (
            space["plain"].__dict__.clear()
            if rng.random() < 0.5
            else space["plain"].__dict__.__setitem__("tag", rng.randrange(2))
        ),
        lambda: space.__setitem__("__file__", rng.choice(["/a.py", "/b.py"])),
        lambda: None,
        lambda: None,
    ]
    quick = code_cache.quick_hits
    for _ in range(600):
        rng.choice(changes)()
        fn = rng.choice(functions)
        try:
            fresh = values._dumps_code(fn)
        except Exception:
            continue  # a value cloudpickle cannot pickle: not the cache's to judge
        assert values.dumps_code(fn) == fresh
    assert code_cache.quick_hits > quick  # the quick proof was used along the way
