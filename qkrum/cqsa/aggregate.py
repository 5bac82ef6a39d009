"""One CQSA round on model-sized updates: clustering, phase encoding, readout, screening.

:func:`cqsa_aggregate` is the pure, seeded per-round function an FL loop calls; it
returns a :class:`CQSAResult`. :func:`qsa_aggregate` is global QSA (one cluster of all
clients, no screening). Which parts are the paper's and which are ours:

1. **Clustering** [paper: random partition into small clusters, redrawn; sizes ours].
   The ``n_valid`` usable clients are permuted with the round's key and cut into
   clusters of ``cluster_size`` in order, the last one holding the remainder (the design
   notes'). ``balanced=True`` instead makes ``ceil(n_valid / cluster_size)`` clusters
   whose sizes differ by at most one, which avoids a tiny last cluster (a cluster of one
   reveals its member's update to the server).
2. **Encoding** [design]. Every coordinate is clipped to ``[-clip, clip]`` (``B``) and
   member ``i`` of cluster ``c`` applies the phase ``phi_ij = alpha_c Delta_ij`` with
   ``alpha_c = headroom * pi / (|c| B)``: the sum of ``|c|`` clipped values lies in
   ``[-headroom*pi, headroom*pi]``, so a clipped update is never wrapped around. The
   design's ``alpha = pi/(k B)`` is ``headroom=1`` with the cluster's own size (a smaller
   last cluster gets the finer scale). Clipping is counted: ``clipped_count`` clients had
   at least one coordinate clipped (``info["clipped_entries"]`` counts coordinates).
   With shot noise, a sum within a few standard deviations of ``+-pi`` can still be read
   out on the other side of the circle (physics, not clipping); ``info["wrapped"]``
   counts such coordinates, and ``headroom < 1`` makes them rare.
3. **Readout** [design]. Per cluster and coordinate, ``Phi_hat`` is drawn from the
   statistical surrogate of :mod:`qkrum.cqsa.surrogate` (``surrogate="readout"`` by
   default) with the cluster's readout visibility ``V(|c|, lam)``
   (:func:`qkrum.cqsa.noise.readout_visibility_closed_form`, checked against the exact
   simulator) and ``shots`` shots per basis; ``shots=None`` is an ideal readout.
   Decoding: ``A_c = Phi_hat_c / alpha_c``. All clusters and coordinates in one
   vectorised, jit-compiled computation (``segment_sum`` over cluster ids).
4. **Screening** [paper: cosine and distance between cluster aggregates; rule details
   and the use of qkrum's selectors ours]: :mod:`qkrum.cqsa.screening`, on the cluster
   means ``a_c = A_c / |c|``. ``screen=None`` (no screening), ``"rule"``, or a method name
   of :func:`qkrum.select` (needs ``f``).
5. **Aggregate** [design]: ``sum_{c kept} A_c / sum_{c kept} |c|``, the mean update of
   the clients in unflagged clusters. If every cluster is flagged there is nothing to
   aggregate and ``ValueError`` is raised (only a ``cos_threshold`` near 1 can do that).

**Non-finite updates** [ours]. A client whose update holds a NaN or an Inf is excluded
before clustering, as a drop-out: no phase gate encodes a NaN, so such a client cannot
take part in the protocol, and the server learns only that it dropped out. Its cluster
id is ``-1`` and it is never kept. Finite values of any size are clipped, not excluded.
If every client is non-finite, ``ValueError``.

Randomness: ``seed`` (an int or a ``jax.random`` key) is split three ways -- the
partition, the readout noise, and the seed handed to ``qkrum.select``. Same seed, same
result.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qkrum import _pytree, metrics
from qkrum._validation import as_client_matrix, as_key, check_int, check_probability
from qkrum.cqsa.noise import check_noise_mode, ghz_fidelity_closed_form, readout_visibility_closed_form
from qkrum.cqsa.screening import (
    DEFAULT_COS_THRESHOLD,
    DEFAULT_KAPPA,
    check_rule_params,
    check_screening_rule,
    screen_rule,
    screen_select,
)
from qkrum.cqsa.surrogate import check_shots, check_surrogate, estimate_phase_unchecked

__all__ = ["CQSAResult", "cluster_detection", "cqsa_aggregate", "partition_clients", "qsa_aggregate"]


class CQSAResult(NamedTuple):
    """The outcome of one CQSA round.

    Attributes:
        aggregate: the mean update of the kept clients, ``(d,)`` (or the structure of the
            input: an ``(n, ...)`` array gives ``(...)``, a pytree gives the same pytree
            without the client axis).
        clusters: int ``(n,)``, each client's cluster id in ``0..C-1``; ``-1`` for a client
            excluded because its update was not finite.
        flagged_clusters: bool ``(C,)``, True for the clusters the screen left out.
        client_kept: bool ``(n,)``, True for the clients whose update is in the aggregate.
        clipped_count: number of clients with at least one coordinate clipped.
        info: details: ``n``, ``n_valid``, ``excluded`` (indices), ``num_clusters``,
            ``cluster_sizes``, ``alpha``, ``visibility`` and ``fidelity`` per cluster,
            ``clipped_entries``, ``clipped_clients`` (bool ``(n,)``), ``wrapped``,
            ``decode_rmse`` (RMS error of the decoded cluster sums: simulation-only
            diagnostics), ``screen`` and ``screen_info``, and the parameters.
    """

    aggregate: Any
    clusters: np.ndarray
    flagged_clusters: np.ndarray
    client_kept: np.ndarray
    clipped_count: int
    info: dict

    @property
    def num_clusters(self) -> int:
        return int(self.flagged_clusters.shape[0])

    def members(self, cluster: int) -> np.ndarray:
        """Client indices of ``cluster``, ascending."""
        return np.flatnonzero(self.clusters == cluster)


def _as_key(seed: Any) -> jax.Array:
    return as_key(seed, "seed", seeds=True)


def _check_clip(clip: Any) -> float:
    try:
        clip = float(clip)
    except (TypeError, ValueError):
        raise TypeError(f"clip must be a positive real number, got {clip!r}") from None
    if not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a finite number > 0 (the clipping bound B), got clip={clip}")
    return clip


def _check_cluster_size(cluster_size: Any, n: int) -> int:
    cluster_size = check_int("cluster_size", cluster_size)
    if not 1 <= cluster_size <= n:
        raise ValueError(f"cluster_size must be in 1..n={n}, got cluster_size={cluster_size}")
    return int(cluster_size)


def partition_clients(key: jax.Array, valid: Any, cluster_size: int, *, balanced: bool = False) -> np.ndarray:
    """Random partition of the ``valid`` clients (bool ``(n,)``) into clusters.

    Returns the cluster id of each client, ``-1`` for invalid ones. Clusters of
    ``cluster_size`` with the remainder last, or with ``balanced`` sizes differing by at
    most one (module docs). Ids are numbered in permutation order.
    """
    valid = np.asarray(valid, dtype=bool)
    idx = np.flatnonzero(valid)
    nv = idx.size
    if nv == 0:
        raise ValueError("no valid client to partition")
    cluster_size = check_int("cluster_size", cluster_size, minimum=1)
    # A host-side permutation seeded by the key's bits: n is small, and jax.random.permutation
    # would compile anew for every distinct number of valid clients.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key), np.uint32).ravel())
    order = idx[rng.permutation(nv)]
    num = -(-nv // cluster_size)
    if balanced:
        sizes = np.full(num, nv // num)
        sizes[: nv % num] += 1
    else:
        sizes = np.full(num, cluster_size)
        sizes[-1] = nv - cluster_size * (num - 1)
    ids = np.full(valid.shape[0], -1, dtype=np.int64)
    ids[order] = np.repeat(np.arange(num), sizes)
    return ids


@partial(jax.jit, static_argnames=("num_clusters", "shots", "model"))
def _cluster_sums(key, x, cid, alpha, vis, clip, num_clusters, shots, model):
    # shots is static here: an FL run keeps it fixed, and None changes the computation.
    """Clip, encode, read out and decode every cluster's sum of the rows of ``x``."""
    clipped = jnp.clip(x, -clip, clip)
    clipped_per_client = jnp.sum(jnp.abs(x) > clip, axis=1)
    true_sum = jax.ops.segment_sum(clipped, cid, num_segments=num_clusters)
    # Sum of the members' phases alpha_c * Delta_ij, i.e. alpha_c times the cluster sum.
    phi = alpha[:, None] * true_sum
    phi_hat = estimate_phase_unchecked(key, phi, jnp.broadcast_to(vis[:, None], phi.shape), shots, model)
    decoded = phi_hat / alpha[:, None]
    wrapped = jnp.sum(jnp.abs(phi_hat - phi) > jnp.pi)
    rmse = jnp.sqrt(jnp.mean(jnp.square(decoded - true_sum)))
    return decoded, clipped_per_client, wrapped, rmse


def _unflatten(updates: Any, flat: jax.Array) -> Any:
    return _pytree.unflatten(flat, _pytree.layout(updates))


def cqsa_aggregate(
    updates: Any,
    *,
    cluster_size: int,
    clip: float,
    lam: float = 0.0,
    shots: int | None = None,
    seed: Any = 0,
    screen: str | None = None,
    f: int | None = None,
    cos_threshold: float = DEFAULT_COS_THRESHOLD,
    kappa: float = DEFAULT_KAPPA,
    screen_options: dict | None = None,
    noise: str = "state",
    surrogate: str = "readout",
    balanced: bool = False,
    headroom: float = 1.0,
    dtype: Any = None,
) -> CQSAResult:
    """One CQSA round (module docs): the mean update of the clients in unflagged clusters.

    Args:
        updates: ``(n, d)`` array, ``(n, ...)`` array or pytree with a leading client axis.
        cluster_size: members per cluster, ``1 <= cluster_size <= n``.
        clip: the clipping bound ``B > 0``, per coordinate.
        lam: depolarizing strength in [0, 1] (per qubit; per gate with ``noise="gate"``).
        shots: shots per measurement basis, ``>= 1``; ``None`` for an ideal readout.
        seed: int seed or ``jax.random`` key.
        screen: ``None``, ``"rule"`` (``cos_threshold``, ``kappa``), or a
            :func:`qkrum.select` method name (needs ``f``, the number of Byzantine clients
            to tolerate; ``screen_options`` go to ``select``).
        noise: ``"state"`` or ``"gate"`` (:mod:`qkrum.cqsa.noise`).
        surrogate: readout model, ``"readout"``, ``"phase"`` or ``"binomial"``
            (:mod:`qkrum.cqsa.surrogate`).
        balanced: cluster sizes differing by at most one instead of a remainder cluster.
        headroom: ``alpha = headroom * pi / (|c| B)``, in ``(0, 1]``.
        dtype: computation dtype (float32 by default).
    """
    x = as_client_matrix(updates, dtype=dtype)
    n, d = x.shape
    cluster_size = _check_cluster_size(cluster_size, n)
    clip = _check_clip(clip)
    lam = check_probability("lam", lam)
    shots = check_shots(shots)
    noise = check_noise_mode(noise)
    model = check_surrogate(surrogate)
    headroom = check_probability("headroom", headroom, open_low=True)
    if screen == "rule":
        cos_threshold, kappa = check_rule_params(cos_threshold, kappa)
    elif screen is not None:
        from qkrum.rules import RULES, Rule

        if not isinstance(screen, Rule):
            try:
                check_screening_rule(screen, {k: v for k, v in (screen_options or {}).items()
                                              if k not in ("project", "m", "norm_guard", "dtype")})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"screen must be None, 'rule' or a qkrum.select method or rule "
                                 f"({', '.join(sorted(RULES))}), got screen={screen!r}: {exc}") from None
        if f is None:
            raise ValueError(f"screen={screen!r} needs f, the number of Byzantine clients to tolerate")
        f = check_int("f", f, minimum=0, maximum=n - 1)
    key_part, key_noise, key_screen = jax.random.split(_as_key(seed), 3)

    valid = np.asarray(jnp.all(jnp.isfinite(x), axis=1))
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError(f"updates: all {n} client updates contain NaN or Inf; there is nothing to aggregate")
    clusters = partition_clients(key_part, valid, cluster_size, balanced=balanced)
    idx = np.flatnonzero(valid)
    cid = clusters[idx]
    sizes = np.bincount(cid)
    num_clusters = sizes.size
    alpha = headroom * math.pi / (sizes * clip)
    vis = np.array([readout_visibility_closed_form(int(s), lam, noise=noise) for s in sizes])
    xv = x if n_valid == n else x[jnp.asarray(idx)]
    sums, clipped_per_client, wrapped, rmse = _cluster_sums(
        key_noise, xv, jnp.asarray(cid), jnp.asarray(alpha, x.dtype), jnp.asarray(vis, x.dtype),
        jnp.asarray(clip, x.dtype), num_clusters, shots, model)
    means = sums / jnp.asarray(sizes, x.dtype)[:, None]

    screen_info: dict[str, Any] = {}
    if screen is None or num_clusters == 1:
        flagged = np.zeros(num_clusters, dtype=bool)
        if screen is not None:
            screen_info["skipped"] = "a single cluster: nothing to compare it with"
    elif screen == "rule":
        flagged, screen_info = screen_rule(means, sizes=sizes, cos_threshold=cos_threshold, kappa=kappa)
    else:
        seed_int = int(jax.random.randint(key_screen, (), 0, 2**31 - 1))
        flagged, screen_info = screen_select(means, f, screen, seed=seed_int, options=screen_options)
    if flagged.all():
        raise ValueError(
            f"screen={screen!r} flagged all {num_clusters} clusters, so there is nothing to aggregate"
            + (f" (cos_threshold={cos_threshold} may be too strict)" if screen == "rule" else ""))

    keep = jnp.asarray(~flagged)
    total = jnp.sum(jnp.where(keep[:, None], sums, 0), axis=0) / float(sizes[~flagged].sum())
    client_kept = np.zeros(n, dtype=bool)
    client_kept[idx] = ~flagged[cid]
    clipped_clients = np.zeros(n, dtype=bool)
    clipped_per_client = np.asarray(clipped_per_client)
    clipped_clients[idx] = clipped_per_client > 0
    fidelity = ([ghz_fidelity_closed_form(int(s), lam) for s in sizes] if noise == "state" else None)
    info = {
        "n": n, "d": d, "n_valid": n_valid, "excluded": np.flatnonzero(~valid).tolist(),
        "cluster_size": cluster_size, "balanced": balanced, "num_clusters": num_clusters,
        "cluster_sizes": sizes, "alpha": alpha, "visibility": vis, "fidelity": fidelity,
        "clip": clip, "clipped_entries": int(clipped_per_client.sum()), "clipped_clients": clipped_clients,
        "wrapped": int(wrapped), "decode_rmse": float(rmse),
        "lam": lam, "shots": shots, "noise": noise, "surrogate": model, "headroom": headroom,
        "screen": screen, "f": f, "screen_info": screen_info,
    }
    return CQSAResult(_unflatten(updates, total), clusters, flagged, client_kept, int(clipped_clients.sum()), info)


def qsa_aggregate(updates: Any, *, clip: float, lam: float = 0.0, shots: int | None = None, seed: Any = 0,
                  noise: str = "state", surrogate: str = "readout", headroom: float = 1.0,
                  dtype: Any = None) -> CQSAResult:
    """Global QSA: one GHZ state shared by every (finite) client, no screening.

    The same round as :func:`cqsa_aggregate` with ``cluster_size = n``: one cluster, whose
    readout visibility ``V(n_valid, lam)`` falls exponentially with the number of clients.
    """
    leaves = jax.tree_util.tree_leaves(updates)
    n = int(np.shape(leaves[0])[0]) if leaves and np.ndim(leaves[0]) >= 1 else 1  # bad input: cqsa_aggregate says why
    return cqsa_aggregate(updates, cluster_size=max(n, 1), clip=clip, lam=lam, shots=shots, seed=seed,
                          screen=None, noise=noise, surrogate=surrogate, headroom=headroom, dtype=dtype)


def cluster_detection(result: CQSAResult, is_byzantine: Any) -> dict:
    """Detection metrics of one round at cluster and at client level.

    A cluster is positive when it holds at least one Byzantine client. Returns
    ``cluster`` and ``client`` (:func:`qkrum.metrics.detection` dicts; excluded
    non-finite clients count as flagged), ``honest_dropped`` (honest clients left out),
    ``honest_dropped_with_attacker`` (of those, the ones that shared a flagged cluster with
    a Byzantine client: the price of cluster-level detection) and
    ``byzantine_kept`` (Byzantine clients whose update reached the aggregate).
    """
    byz = np.asarray(is_byzantine)
    if byz.shape != result.clusters.shape:
        raise ValueError(f"is_byzantine must have shape {result.clusters.shape}, got {byz.shape}")
    if byz.dtype != bool:
        if not np.issubdtype(byz.dtype, np.integer) or not np.isin(byz, (0, 1)).all():
            raise TypeError(f"is_byzantine must be boolean (or 0/1 integers), got dtype {byz.dtype}")
        byz = byz.astype(bool)
    in_cluster = result.clusters >= 0
    cluster_positive = np.zeros(result.num_clusters, dtype=bool)
    np.logical_or.at(cluster_positive, result.clusters[in_cluster], byz[in_cluster])
    honest_out = ~byz & ~result.client_kept
    shared = np.zeros(byz.shape, dtype=bool)
    shared[in_cluster] = cluster_positive[result.clusters[in_cluster]] & result.flagged_clusters[
        result.clusters[in_cluster]]
    return {
        "cluster": metrics.detection(~result.flagged_clusters, cluster_positive),
        "client": metrics.detection(result.client_kept, byz),
        "honest_dropped": int(honest_out.sum()),
        "honest_dropped_with_attacker": int((honest_out & shared).sum()),
        "byzantine_kept": int((byz & result.client_kept).sum()),
    }
