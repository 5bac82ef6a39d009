"""Robust-aggregation rules as values, and the pre-aggregation steps composed with them.

``qkrum.rule(name, **options)`` returns a validated, immutable :class:`Rule`; the
factories below build the same values directly, in the optax manner::

    qkrum.rule("trimmed_mean", beta=2) == qkrum.rules.trimmed_mean(beta=2)
    qkrum.chain("nnm", "trimmed_mean")          # NNM, then the trimmed mean
    qkrum.chain(qkrum.rules.bucketing(s=2), qkrum.rules.multikrum())

Every consumer (:func:`qkrum.select`, :func:`qkrum.aggregator`, :func:`qkrum.fl.simulate`,
``qkrum simulate --method``, CQSA screening) takes a name, a chain spec such as
``"nnm,multikrum"`` or ``"bucketing(s=3),median"``, or a :class:`Rule`.

Layout: :mod:`~qkrum.rules.base` (the contract, registry, chain), :mod:`~qkrum.rules.round`
(one round's cached distances), :mod:`~qkrum.rules.selecting` (MultiKrum and the QUBO
rules), :mod:`~qkrum.rules.statistics` (the classical statistics, pure JAX),
:mod:`~qkrum.rules.classical` (the classical rules), :mod:`~qkrum.rules.preaggregation`
(the pre-aggregators' formulas) and :mod:`~qkrum.rules.preaggregators` (their values).
"""

from qkrum.rules.base import (
    PREAGGREGATORS,
    RULES,
    Combine,
    MethodResult,
    PreAggregator,
    PreResult,
    Rule,
    as_rule,
    chain,
    factory_of,
    parse_spec,
    preaggregator,
    register_preaggregator,
    register_rule,
    rule,
)
from qkrum.rules.classical import bulyan, centered_clipping, geometric_median, krum, mean, median, trimmed_mean
from qkrum.rules.preaggregators import arc, bucketing, clipping, nnm
from qkrum.rules.round import Round
from qkrum.rules.selecting import (
    PAPER_QUBO,
    cascade,
    cascade_paper,
    multikrum,
    multikrum_nnm,
    multisignal,
    multisignal_paper,
    qubo,
    qubo_paper,
    screened_multikrum_nnm,
)

__all__ = [
    "DEFAULT", "PAPER_QUBO", "PREAGGREGATORS", "RULES", "Combine", "MethodResult", "PreAggregator", "PreResult", "Round", "Rule",
    "arc", "as_rule", "bucketing", "bulyan", "cascade", "cascade_paper", "centered_clipping", "chain", "clipping", "factory_of",
    "geometric_median", "krum", "mean", "median", "multikrum", "multikrum_nnm", "multisignal", "multisignal_paper", "nnm",
    "parse_spec", "preaggregator", "qubo", "qubo_paper", "register_preaggregator", "register_rule", "rule",
    "screened_multikrum_nnm", "trimmed_mean",
]

#: The default rule of :func:`qkrum.select`, :func:`qkrum.aggregator`,
#: :func:`qkrum.fl.simulate`, ``qkrum simulate``, the sweep runner and the Flower strategy:
#: the defence with the best measured worst case that still selects
#: (:func:`screened_multikrum_nnm`, docs/robustness.md).
DEFAULT = "screened_multikrum_nnm"

# Explicit registration: the names every consumer accepts.
for _name, _factory in {
    "multikrum": multikrum, "multikrum_nnm": multikrum_nnm, "screened_multikrum_nnm": screened_multikrum_nnm,
    "qubo": qubo, "cascade": cascade, "multisignal": multisignal,
    "qubo-paper": qubo_paper, "cascade-paper": cascade_paper, "multisignal-paper": multisignal_paper,
    "mean": mean, "median": median, "trimmed_mean": trimmed_mean, "geometric_median": geometric_median,
    "krum": krum, "bulyan": bulyan, "centered_clipping": centered_clipping,
}.items():
    register_rule(_name, _factory)
for _name, _factory in {"nnm": nnm, "bucketing": bucketing, "clipping": clipping, "arc": arc}.items():
    register_preaggregator(_name, _factory)
del _name, _factory
