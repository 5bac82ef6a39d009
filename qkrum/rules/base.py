"""What a robust-aggregation rule is, and how rules compose.

* :class:`Rule`: an immutable, validated value: its name, its options, how it selects
  (``run(Round) -> MethodResult``: mask, scores, info) and how it combines (the
  aggregate: the mean of the selected rows, or a robust statistic), eagerly and under
  ``jit``. Built by a factory (:func:`rule`), which checks every option at construction.
* :class:`PreAggregator`: a step applied to the round's updates before the rule
  (nearest-neighbour mixing, bucketing, clipping), traceable JAX.
* :func:`chain`: pre-aggregators followed by one rule; the result is again a :class:`Rule`.
* :func:`as_rule`: the one resolution every consumer uses: a name, a chain spec
  (``"nnm,trimmed_mean"``, ``"bucketing(s=3),multikrum"``), a :class:`Rule`, plus options.

Registration is explicit (:func:`register_rule`, :func:`register_preaggregator`, called
in :mod:`qkrum.rules`), never a side effect of importing a module.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

__all__ = ["PREAGGREGATORS", "RULES", "Combine", "factory_of", "MethodResult", "PreAggregator", "PreResult", "Rule", "as_rule", "chain", "parse_spec",
           "preaggregator", "register_preaggregator", "register_rule", "rule"]

#: ``combine(x (n, d), mask (n,)) -> (d,)``: a rule's aggregate of the rows it was given.
Combine = Callable[[jax.Array, jax.Array], jax.Array]


class MethodResult(NamedTuple):
    """What a rule's ``run`` returns for one round (over the rows it was given)."""

    selected: Any  # bool (rows,)
    scores: Any  # float (rows,), lower = more trusted
    info: dict
    # This round's statistic when the aggregate is not the mean of the selected rows and
    # depends on the round (e.g. a trimming depth lowered for want of valid clients).
    combine: Combine | None = None
    # bool (rows,): rows the rule removed from the round (a screen): like invalid rows,
    # never selected and never anyone's neighbour in the rule's mix step. None: none.
    excluded: Any = None


class PreResult(NamedTuple):
    """A pre-aggregation step's output: the new rows, which of them are valid, and for
    each input row the output row that carries it (``None``: row ``i`` → row ``i``)."""

    x: jax.Array
    valid: jax.Array
    owner: jax.Array | None = None


def _format_value(value: Any) -> str:
    if isinstance(value, (str, int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
        return repr(value)
    if isinstance(value, (np.ndarray, jax.Array)):
        return f"<array {tuple(np.shape(value))}>"
    return f"<{type(value).__name__}>"


def _spec(name: str, options: tuple) -> str:
    if not options:
        return name
    return f"{name}({', '.join(f'{k}={_format_value(v)}' for k, v in options)})"


def _frozen(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(options.items()))


def _same_rows(n: int) -> int:
    return n


@dataclasses.dataclass(frozen=True, eq=False)
class PreAggregator:
    """A pre-aggregation step: ``step(x, valid, f, key) -> PreResult``, traceable.

    ``rows(n)`` is how many rows it returns for ``n`` (static); ``options`` are the
    validated hyperparameters, ``spec`` their text form.
    """

    name: str
    options: tuple[tuple[str, Any], ...]
    step: Callable[..., PreResult] = dataclasses.field(repr=False)
    rows: Callable[[int], int] = dataclasses.field(default=_same_rows, repr=False)

    def __call__(self, x: jax.Array, valid: jax.Array, f: int, key: jax.Array) -> PreResult:
        return self.step(x, valid, f, key)

    @property
    def keeps_rows(self) -> bool:
        """Whether it returns one row per input row (not bucketing)."""
        return self.rows is _same_rows

    @property
    def spec(self) -> str:
        return _spec(self.name, self.options)

    def __repr__(self) -> str:
        return f"PreAggregator({self.spec!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, PreAggregator) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(("pre", self.spec))


def _mean_of_selected(x: jax.Array, mask: jax.Array) -> jax.Array:
    from qkrum._pytree import masked_mean

    return masked_mean(x, mask)


@dataclasses.dataclass(frozen=True, eq=False)
class Rule:
    """A robust-aggregation rule: build with :func:`qkrum.rule` or :func:`qkrum.chain`.

    Attributes:
        name: the registered name of the final rule.
        options: its validated options, as sorted ``(name, value)`` pairs (:attr:`kwargs`).
        pre: the pre-aggregation steps applied before it, in order.
        statistic: ``f -> combine(x, mask)`` for rules whose aggregate is a robust
            statistic (median, trimmed mean, ...: their ``selected`` lists the rows they
            looked at); ``None`` when it is the mean of the selected rows (MultiKrum, the
            QUBO methods, Krum), see :attr:`selects`.
        uses_projection: whether :func:`qkrum.select`'s ``project`` applies (the
            classical statistics always work on the full updates).
        mix: steps applied *after* the selection, to the rows the aggregate is taken
            over (:func:`multikrum_nnm`: the rule selects on the clients' own updates and
            averages the selected clients' nearest-neighbour-mixed updates). Unlike
            ``pre``, they never change what the rule sees, and they keep rows in place.
    """

    name: str
    options: tuple[tuple[str, Any], ...]
    run: Callable[[Any], MethodResult] = dataclasses.field(repr=False)
    statistic: Callable[[int], Combine] | None = dataclasses.field(default=None, repr=False)
    pre: tuple[PreAggregator, ...] = ()
    uses_projection: bool = True
    factory: Callable[..., "Rule"] | None = dataclasses.field(default=None, repr=False)
    mix: tuple[PreAggregator, ...] = ()

    def __post_init__(self) -> None:
        for p in self.mix:
            if not p.keeps_rows:
                raise ValueError(f"a rule's mix step must keep rows in place; {p.spec!r} changes their number")

    @property
    def selects(self) -> bool:
        """Whether the aggregate is the mean of the selected rows (no robust statistic)."""
        return self.statistic is None

    @property
    def plain_mean(self) -> bool:
        """Whether the aggregate is the plain mean of the selected clients' own updates
        (a selecting rule with no pre-aggregation and no mixing)."""
        return self.statistic is None and not self.pre and not self.mix

    @property
    def kwargs(self) -> dict:
        """The options as a dict (what :meth:`with_options` starts from)."""
        return dict(self.options)

    @property
    def spec(self) -> str:
        """Text form, e.g. ``"nnm,trimmed_mean(beta=2)"`` (what ``qkrum simulate --method`` takes)."""
        return ",".join([p.spec for p in self.pre] + [_spec(self.name, self.options)])

    def __repr__(self) -> str:
        return f"Rule({self.spec!r})"

    def __str__(self) -> str:
        return self.spec

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Rule) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(("rule", self.spec))

    def with_options(self, **options: Any) -> "Rule":
        """The same rule (and pre-aggregation) with ``options`` changed, validated again."""
        if not options:
            return self
        factory = self.factory or _RULES.get(self.name)
        if factory is None:
            raise TypeError(f"rule {self.name!r} has no factory to rebuild it with options {sorted(options)}")
        return dataclasses.replace(_build(self.name, factory, {**self.kwargs, **options}), pre=self.pre)

    def rows(self, n: int) -> int:
        """How many rows the final rule sees for ``n`` clients (bucketing makes fewer)."""
        for p in self.pre:
            n = p.rows(n)
        return n

    def combine(self, f: int) -> Combine:
        """The traceable aggregate ``(x, mask) -> (d,)`` of the final rule's rows, for ``f``
        Byzantine clients: the mean of the selected rows, or the rule's statistic."""
        return _mean_of_selected if self.statistic is None else self.statistic(f)

    def preaggregate(self, x: jax.Array, valid: jax.Array, f: int, key: jax.Array) -> PreResult:
        """Apply the pre-aggregation steps in order (traceable); step ``i`` draws its random
        choices from ``fold_in(key, i)``. ``owner`` maps each client to the row that
        carries it (``None`` when every step keeps rows in place)."""
        owner = None
        for i, p in enumerate(self.pre):
            out = p(x, valid, f, jax.random.fold_in(key, i))
            x, valid = out.x, out.valid
            if out.owner is not None:
                owner = out.owner if owner is None else out.owner[owner]
        return PreResult(x, valid, owner)

    def aggregate_rows(self, x: jax.Array, valid: jax.Array, row_selected: jax.Array, f: int,
                       key: jax.Array, combine: Combine | None = None, row_valid: Any = None) -> jax.Array:
        """The aggregate of a round: pre-aggregate ``x`` (clients ``valid``), then the
        rule's combine over the rows ``row_selected``. ``row_valid`` (bool, one per row;
        ``None``: all) removes the rows the rule excluded (:attr:`MethodResult.excluded`)
        from its mix step. Traceable; the one formula behind
        :meth:`qkrum.Selection.aggregate` and :func:`qkrum.aggregator`."""
        out = self.preaggregate(x, valid, f, key) if self.pre else PreResult(x, valid)
        rows = out.x
        mix_valid = out.valid if row_valid is None else out.valid & jax.numpy.asarray(row_valid, bool)
        for i, p in enumerate(self.mix):  # after the selection: only the aggregate sees them
            rows = p(rows, mix_valid, f, jax.random.fold_in(key, len(self.pre) + i)).x
        return (combine or self.combine(f))(rows, row_selected)

    def select(self, updates: Any, f: int, **kwargs: Any):
        """``qkrum.select(updates, f, method=self, **kwargs)``."""
        from qkrum.selection import select

        return select(updates, f, method=self, **kwargs)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

_RULES: dict[str, Callable[..., Rule]] = {}
_PRE: dict[str, Callable[..., PreAggregator]] = {}
#: Read-only views: name → factory.
RULES: Mapping[str, Callable[..., Rule]] = MappingProxyType(_RULES)
PREAGGREGATORS: Mapping[str, Callable[..., PreAggregator]] = MappingProxyType(_PRE)


def register_rule(name: str, factory: Callable[..., Rule]) -> None:
    """Make ``factory(**options) -> Rule`` available as ``qkrum.rule(name, ...)``."""
    if name in _PRE:
        raise ValueError(f"{name!r} is already a pre-aggregator name")
    _RULES[name] = factory


def register_preaggregator(name: str, factory: Callable[..., PreAggregator]) -> None:
    """Make ``factory(**options) -> PreAggregator`` available by ``name`` in chains."""
    if name in _RULES:
        raise ValueError(f"{name!r} is already a rule name")
    _PRE[name] = factory


def factory_of(name: str, kind: str = "rule") -> Callable[[Callable], Callable]:
    """Decorator for a factory ``fn(**options) -> Rule | PreAggregator``: the value it
    returns gets ``name``, the options the caller passed (not the defaults, so a spec stays
    short and a default can improve without changing saved configs) and the factory itself
    (for :meth:`Rule.with_options`). The wrapper keeps ``fn``'s signature and docstring."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def factory(**options: Any):
            value = fn(**options)
            if kind == "rule":
                return dataclasses.replace(value, name=name, options=_frozen(options), factory=factory)
            return dataclasses.replace(value, name=name, options=_frozen(options))

        return factory

    return decorate


def _option_names(factory: Callable) -> tuple[str, ...] | None:
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def _build(name: str, factory: Callable, options: dict):
    from qkrum._validation import check_options

    allowed = _option_names(factory)
    if allowed is not None:
        check_options(f"method {name!r}", options, allowed)
    return factory(**options)


def rule(name: str, **options: Any) -> Rule:
    """The registered rule ``name`` with ``options``, validated now (an unknown or bad
    option raises here, naming it, not in the first round). ``help(qkrum.rules.<name>)``
    documents each rule's options."""
    if not isinstance(name, str) or name not in _RULES:
        raise ValueError(f"unknown method={name!r}; valid methods: {', '.join(sorted(_RULES))}")
    return _build(name, _RULES[name], options)


def preaggregator(name: str, **options: Any) -> PreAggregator:
    """The registered pre-aggregator ``name`` with ``options``, validated now."""
    if not isinstance(name, str) or name not in _PRE:
        raise ValueError(f"unknown pre-aggregator={name!r}; valid: {', '.join(sorted(_PRE))}")
    return _build(name, _PRE[name], options)


def _step(step: Any, where: str) -> Rule | PreAggregator:
    if isinstance(step, (Rule, PreAggregator)):
        return step
    if isinstance(step, str):
        parts = parse_spec(step)
        if len(parts) > 1:
            return chain(*step_values(parts))
        name, options = parts[0]
        if name in _PRE:
            return preaggregator(name, **options)
        if name in _RULES:
            return rule(name, **options)
        raise ValueError(f"unknown method={name!r}{where}; valid methods: {', '.join(sorted(_RULES))}; "
                         f"pre-aggregators: {', '.join(sorted(_PRE))}")
    raise TypeError(f"a chain step must be a name, a qkrum.Rule or a pre-aggregator, got {step!r}{where}")


def step_values(parts: list[tuple[str, dict]]) -> list[Rule | PreAggregator]:
    out = []
    for name, options in parts:
        if name in _PRE:
            out.append(preaggregator(name, **options))
        elif name in _RULES:
            out.append(rule(name, **options))
        else:
            raise ValueError(f"unknown method={name!r}; valid methods: {', '.join(sorted(_RULES))}; "
                             f"pre-aggregators: {', '.join(sorted(_PRE))}")
    return out


def chain(*steps: Any) -> Rule:
    """Pre-aggregation steps followed by one rule, e.g. ``chain("nnm", "trimmed_mean")`` or
    ``chain(qkrum.preaggregator("bucketing", s=2), qkrum.rule("multikrum"))``.

    Steps are names, chain specs, :class:`PreAggregator` or :class:`Rule` values; only the
    last may be a rule. The result is a :class:`Rule` whose ``pre`` holds the steps: it
    selects per client where its final rule selects (a client carried by a selected
    bucket is selected), and it is accepted wherever a method name is.
    """
    if not steps:
        raise ValueError("chain needs at least one step (a rule)")
    resolved = [_step(s, f" (chain step {i})") for i, s in enumerate(steps)]
    *front, last = resolved
    if not isinstance(last, Rule):
        raise TypeError(f"the last step of a chain must be a rule, got the pre-aggregator {last.spec!r}; "
                        f"end it with a rule, e.g. chain({last.spec!r}, 'multikrum')")
    pre: list[PreAggregator] = []
    for i, s in enumerate(front):
        if isinstance(s, Rule):
            raise TypeError(f"chain step {i} {s.spec!r} is a rule; only the last step of a chain may be a rule "
                            f"(pre-aggregators: {', '.join(sorted(_PRE))})")
        pre.append(s)
    return dataclasses.replace(last, pre=tuple(pre) + last.pre)


def _split_top(text: str, what: str = "method") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in {what}={text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced parentheses in {what}={text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _literal(text: str) -> Any:
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def parse_spec(text: str, *, what: str = "method") -> list[tuple[str, dict]]:
    """``"nnm,trimmed_mean(beta=2)"`` → ``[("nnm", {}), ("trimmed_mean", {"beta": 2})]``.

    Option values are Python literals (numbers, strings, ``None``, ``True``, tuples);
    anything else is taken as a string. ``what`` names the parameter in errors (attack
    specs are parsed here too).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be a non-empty name or chain, got {what}={text!r}")
    out = []
    for part in _split_top(text, what):
        if not part:
            raise ValueError(f"empty step in {what}={text!r}")
        name, _, rest = part.partition("(")
        options: dict[str, Any] = {}
        if rest:
            if not rest.endswith(")"):
                raise ValueError(f"step {part!r} of {what}={text!r} must look like name(key=value, ...)")
            for item in _split_top(rest[:-1], what) if rest[:-1].strip() else []:
                key, eq, value = item.partition("=")
                if not eq or not key.strip().isidentifier():
                    raise ValueError(f"option {item!r} of step {part!r} must look like key=value")
                options[key.strip()] = _literal(value)
        out.append((name.strip(), options))
    return out


def as_rule(method: Any, options: Mapping[str, Any] | None = None) -> Rule:
    """The :class:`Rule` for ``method``: a name, a chain spec, a :class:`Rule`; ``options``
    (e.g. :func:`qkrum.select`'s ``**options``) go to the final rule, validated now."""
    options = dict(options or {})
    if isinstance(method, Rule):
        return method.with_options(**options)
    if isinstance(method, PreAggregator):
        raise TypeError(f"the pre-aggregator {method.spec!r} is not a rule on its own; chain it with one, "
                        f"e.g. qkrum.chain({method.spec!r}, 'multikrum')")
    if not isinstance(method, str):
        raise TypeError(f"method must be a name, a chain spec or a qkrum.Rule, got {method!r}")
    if method not in _RULES and "," not in method and "(" not in method:
        raise ValueError(f"unknown method={method!r}; valid methods: {', '.join(sorted(_RULES))}"
                         + (f"; pre-aggregators ({', '.join(sorted(_PRE))}) need a rule after them, "
                            f"e.g. '{method},multikrum'" if method in _PRE else ""))
    parts = parse_spec(method)
    if options:
        name, own = parts[-1]
        parts[-1] = (name, {**own, **options})
    steps = step_values(parts)
    return steps[0] if len(steps) == 1 and isinstance(steps[0], Rule) else chain(*steps)

