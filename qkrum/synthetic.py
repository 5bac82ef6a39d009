"""Synthetic client updates with the structure of real federated rounds.

Real honest updates are not i.i.d. Gaussian vectors. They share a common descent
direction, differ from each other mostly inside a low-dimensional subspace (clients with
different label mixes pull in a few different directions), their coordinates have very
different scales (some layers and units move much more than others), and some clients
are far noisier than others (small or skewed local datasets). The generator reproduces
those four features:

    u_i = (c + τ z_i) B  +  σ s_i (w ⊙ ε_i)

* ``B`` (rank × d): a random basis whose columns carry the coordinate scales ``w``;
* ``c`` (rank,): the shared drift, the same for every client; ``z_i ~ N(0, I)`` is the
  client's own mixture of the same directions, weighted by ``heterogeneity`` ``τ``;
* ``w_j ~ LogNormal(0, coord_sigma)``: heavy-tailed per-coordinate scale, normalised to
  mean square 1;
* ``s_i ~ LogNormal(0, client_sigma)``: heavy-tailed per-client noise level;
* ``ε_i ~ N(0, I_d)``, so the noise is a Gaussian scale mixture (heavy-tailed marginals).

Scales are set so that the shared drift has norm ``drift_norm`` and a client's deviation
from it has expected norm about ``spread · drift_norm``; the default ``spread = 1`` gives
pairwise cosine similarities around 0.5 between honest clients, as in non-IID MNIST.
Everything is generated on the default JAX device, in one pass, from a ``jax.random``
key: same key, same updates.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from qkrum._validation import check_int

__all__ = ["honest_updates"]


@partial(jax.jit, static_argnames=("n", "d", "rank", "dtype"))
def _generate(key, n, d, rank, heterogeneity, noise_share, coord_sigma, client_sigma,
              drift_norm, spread, dtype):
    k_basis, k_drift, k_mix, k_coord, k_client, k_noise = jax.random.split(key, 6)
    w = jnp.exp(coord_sigma * jax.random.normal(k_coord, (d,), jnp.float32))
    w = w / jnp.sqrt(jnp.mean(jnp.square(w)))
    basis = jax.random.normal(k_basis, (rank, d), jnp.float32) * w / jnp.sqrt(d)
    drift = jax.random.normal(k_drift, (rank,), jnp.float32)
    drift = drift / jnp.linalg.norm(drift) * drift_norm
    # Split the per-client deviation budget between the shared subspace and the noise.
    dev = spread * drift_norm
    mix = jax.random.normal(k_mix, (n, rank), jnp.float32)
    mix = mix * (heterogeneity * dev * jnp.sqrt(1.0 - noise_share) / jnp.sqrt(rank))
    coef = drift[None, :] + mix
    client_scale = jnp.exp(client_sigma * jax.random.normal(k_client, (n,), jnp.float32))
    client_scale = client_scale / jnp.sqrt(jnp.mean(jnp.square(client_scale)))
    noise_std = dev * jnp.sqrt(noise_share) / jnp.sqrt(d)
    eps = jax.random.normal(k_noise, (n, d), jnp.float32)
    out = coef @ basis + (noise_std * client_scale)[:, None] * (w[None, :] * eps)
    return out.astype(dtype)


def honest_updates(
    key: jax.Array,
    n: int,
    d: int,
    *,
    rank: int = 8,
    heterogeneity: float = 1.0,
    noise_share: float = 0.5,
    coord_sigma: float = 1.0,
    client_sigma: float = 0.5,
    drift_norm: float = 1.0,
    spread: float = 1.0,
    dtype=jnp.float32,
) -> jax.Array:
    """Draw ``n`` honest client updates of dimension ``d`` (see the module docs).

    Args:
        key: ``jax.random`` key.
        n, d: number of clients and coordinates.
        rank: dimension of the shared subspace in which clients differ.
        heterogeneity: weight of the client-specific mixture (0 = all clients share the
            drift exactly and differ only by noise).
        noise_share: fraction of the deviation energy that is unstructured noise.
        coord_sigma, client_sigma: log-normal spreads of coordinate and client scales.
        drift_norm: norm of the shared drift.
        spread: expected deviation norm relative to ``drift_norm``.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    rank = check_int("rank", rank, minimum=1)
    for name, value in (("heterogeneity", heterogeneity), ("coord_sigma", coord_sigma),
                        ("client_sigma", client_sigma), ("drift_norm", drift_norm), ("spread", spread)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {name}={value}")
    if not 0.0 <= noise_share <= 1.0:
        raise ValueError(f"noise_share must lie in [0, 1], got noise_share={noise_share}")
    return _generate(key, n, d, rank, heterogeneity, noise_share, coord_sigma, client_sigma,
                     drift_norm, spread, jnp.dtype(dtype))
