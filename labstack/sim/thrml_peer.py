"""The same Ising model sampled by thrml (Extropic's JAX block-Gibbs library): an independent peer.

Used by the cross-check test and the benchmark only; thrml (and JAX) is a test-only
dependency, imported when a function here is called.

Conventions, read from thrml 0.1.4's source: ``IsingEBM`` has energy
``-beta (Σ b_i s_i + Σ w_ij s_i s_j)`` and ``SpinGibbsConditional`` draws
``P(s=+1) = sigmoid(2 gamma)``, ``gamma = beta (b_i + Σ w_ij s_j)``. So with
``beta = 1 / T_eff``, ``b = h`` and ``w = J`` (kelvin) it samples exactly this
simulator's ``P(s) ∝ exp((Σ h s + Σ J s s) / T_eff)``. thrml stores spins as bools
(True = +1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PeerModel:
    """A thrml program for an Ising model given as (n, pairs, h, J, T_eff) and colour classes."""

    nodes: list[Any]
    model: Any
    program: Any
    free_blocks: list[Any]

    @classmethod
    def build(
        cls,
        n: int,
        pairs: np.ndarray,
        h: np.ndarray,
        j: np.ndarray,
        t_eff: float,
        colors: list[np.ndarray],
    ) -> PeerModel:
        import jax.numpy as jnp
        from thrml import Block, SpinNode
        from thrml.models import IsingEBM, IsingSamplingProgram

        nodes = [SpinNode() for _ in range(n)]
        edges = [(nodes[a], nodes[b]) for a, b in np.asarray(pairs, dtype=int).reshape(-1, 2)]
        model = IsingEBM(
            nodes,
            edges,
            jnp.asarray(h, dtype=jnp.float32),
            jnp.asarray(j, dtype=jnp.float32),
            jnp.array(1.0 / t_eff, dtype=jnp.float32),
        )
        free_blocks = [Block([nodes[i] for i in members]) for members in colors]
        program = IsingSamplingProgram(model, free_blocks, clamped_blocks=[])
        return cls(nodes, model, program, free_blocks)

    def compiled(self, n_samples: int, sweeps_per_sample: int, n_chains: int = 1):
        """thrml's recommended fast path: ``sample_states`` under ``jax.jit``.

        Returns ``(run, init)``: ``run(key)`` samples ``n_chains`` independent chains
        (``n_samples`` samples, ``sweeps_per_sample`` sweeps apart, no warm-up) from the
        initial states ``init`` (made here by thrml's ``hinton_init``) and returns the
        bool samples ``(n_chains, n_samples, n)``. The program is traced and compiled
        once, at the first call of ``run``; later calls with new keys reuse it, which is
        how thrml's own training loop runs it (``equinox.filter_jit`` around the
        sampler). One chain is jitted as it is: under ``jax.vmap`` the same chain ran
        ~3.6x slower on the CPU (256x256: 1.7e7 against 6.1e7 updates/s; XLA's batched
        gathers), so vmap is used only for several chains, as thrml does.
        """
        import jax
        from thrml import Block, SamplingSchedule, sample_states
        from thrml.models import hinton_init

        schedule = SamplingSchedule(
            n_warmup=0, n_samples=n_samples, steps_per_sample=sweeps_per_sample
        )
        observed = [Block(self.nodes)]

        def one(key, init):
            return sample_states(key, self.program, schedule, init, [], observed)[0]

        keys = jax.random.split(jax.random.key(12345), n_chains)
        if n_chains == 1:
            init = hinton_init(keys[0], self.model, self.free_blocks, ())
            single = jax.jit(one)

            def run(key, state=init):
                return jax.block_until_ready(single(key, state))[None]

            return run, init
        init = jax.vmap(lambda k: hinton_init(k, self.model, self.free_blocks, ()))(keys)
        batched = jax.jit(jax.vmap(one))

        def run_batched(key, state=init):
            return jax.block_until_ready(batched(jax.random.split(key, n_chains), state))

        return run_batched, init

    def _run(self, n_samples: int, sweeps_per_sample: int, n_warmup: int, seed: int):
        import jax
        from thrml import Block, SamplingSchedule, sample_states
        from thrml.models import hinton_init

        key_init, key_run = jax.random.split(jax.random.key(seed))
        init = hinton_init(key_init, self.model, self.free_blocks, ())
        schedule = SamplingSchedule(
            n_warmup=n_warmup, n_samples=n_samples, steps_per_sample=sweeps_per_sample
        )
        out = sample_states(key_run, self.program, schedule, init, [], [Block(self.nodes)])
        return jax.block_until_ready(out[0])

    def samples(
        self, n_samples: int, sweeps_per_sample: int = 1, n_warmup: int = 100, seed: int = 0
    ) -> np.ndarray:
        """(n_samples, n) int8 spins in cell order."""
        up = np.asarray(self._run(n_samples, sweeps_per_sample, n_warmup, seed))
        return (2 * up.astype(np.int8) - 1).astype(np.int8)

    def updates_per_second(self, n_sweeps: int, repeats: int = 3, samples: int = 10) -> float:
        """Cell updates per second over ``n_sweeps`` sweeps (compiled first; best of ``repeats``)."""
        per_sample = max(1, n_sweeps // samples)
        self._run(samples, per_sample, 0, 0)  # compile for this schedule
        best = np.inf
        for r in range(repeats):
            start = time.perf_counter()
            self._run(samples, per_sample, 0, r + 1)
            best = min(best, time.perf_counter() - start)
        return len(self.nodes) * samples * per_sample / best
