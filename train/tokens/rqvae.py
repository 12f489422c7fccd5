"""The residual-quantized VAE quantizer (3MToken-style semantic IDs): MLP encoder, residual codebooks with a
straight-through estimator, MLP decoder. Interface and shared numerics: :mod:`train.tokens.quantizer`."""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.tokens.rqvae is a module of the train package: import it, or use python -m")

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from train.tokens.quantizer import (
    Quantizer,
    _get,
    _kmeans,
    _nearest,
    _sub_seed,
)

# --------------------------------------------------------------------------- #
# RQ-VAE
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RQVAEConfig:
    """Architecture and training options of :class:`RQVAEQuantizer`."""

    latent_dim: int = 32  # width of the quantized latent (codebook vectors)
    hidden_dim: int = 256  # hidden width of the one-hidden-layer MLP encoder and decoder
    epochs: int = 0  # quantized-training epochs; 0 = auto: ~target_steps optimizer steps, clamped to [20, 400]
    target_steps: int = 2000  # optimizer steps the auto epoch count aims for
    warmup_fraction: float = 0.1  # extra autoencoder-only epochs (fraction of epochs) before the codebook k-means init
    batch_size: int = 128  # mini-batch rows (capped at N)
    lr: float = 2e-3  # Adam learning rate (2e-3 beat 1e-3 and 3e-3 on 300-row synthetic catalogs)
    beta: float = 0.25  # commitment weight: beta * ||r - sg[e]||^2
    kmeans_init: bool = True  # init codebooks by residual k-means on warmed-up latents (else small uniform noise)
    dead_code_restart: bool = True  # re-seed codes unused during an epoch with random current residuals
    restart_sample: int = 8192  # rows whose residuals are computed for re-seeding (caps the cost on big N)
    threads: int = 1  # torch intra-op threads while fitting/encoding (0 = leave torch's setting); see _torch_threads


def _build_net(d: int, cfg: RQVAEConfig) -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(
                nn.Linear(d, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim)
            ),
            "decoder": nn.Sequential(
                nn.Linear(cfg.latent_dim, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, d)
            ),
        }
    )


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Temporarily run torch with ``n`` intra-op threads (process-wide; restored on exit).

    The MLPs here are tiny, so extra threads buy little - and on a busy shared CPU
    their spin-waiting made a 4-s fit take 2-3 minutes with 2 threads (measured).
    """
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _nearest_t(r: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    return torch.argmin((book * book).sum(1)[None, :] - 2.0 * (r @ book.T), dim=1)


class RQVAEQuantizer(Quantizer):
    """Residual-quantized autoencoder (RQ-VAE) with L codebooks in a learned latent space.

    Encoder ``d -> hidden -> latent``; level l picks the code nearest to the residual
    ``r_l = z - sum_{j<l} e_j``; the decoder ``latent -> hidden -> d`` reconstructs from
    ``sum_l e_l`` (straight-through gradient to the encoder).  Loss per batch:
    ``MSE(x_hat, x) + sum_l [ ||sg[r_l] - e_l||^2 + beta * ||r_l - sg[e_l]||^2 ]``.
    Training: an autoencoder-only warm-up, codebook init by residual k-means on the
    latents, then Adam with dead-code restarts after every epoch.  Deterministic for
    a seed on CPU (torch's global RNG is forked, so callers' RNG state is untouched).
    """

    kind: ClassVar[str] = "rqvae"
    config_type: ClassVar[type] = RQVAEConfig

    def __init__(self, levels: int, codebook_size: int, **kw: Any) -> None:
        """See :class:`Quantizer`; keyword overrides are :class:`RQVAEConfig` fields."""
        super().__init__(levels, codebook_size, **kw)
        self._net: nn.ModuleDict | None = None
        self._books: torch.Tensor | None = None  # (L, K, latent)

    # -- training ------------------------------------------------------------ #

    def _epochs(self, n: int) -> tuple[int, int, int]:
        """(batch size, quantized epochs, warm-up epochs) for N = n rows."""
        cfg = self.config
        bs = max(1, min(cfg.batch_size, n))
        epochs = cfg.epochs or min(400, max(20, math.ceil(cfg.target_steps / math.ceil(n / bs))))
        return bs, epochs, round(cfg.warmup_fraction * epochs)

    def _quantize(
        self, z: torch.Tensor, books: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantized latent, codes (B, L), codebook loss, commitment loss)."""
        r = z
        zq = torch.zeros_like(z)
        cb_loss = z.new_zeros(())
        commit = z.new_zeros(())
        codes = []
        for level in range(self.levels):
            idx = _nearest_t(r.detach(), books[level].detach())
            e = books[level][idx]
            cb_loss = cb_loss + F.mse_loss(e, r.detach())
            commit = commit + F.mse_loss(r, e.detach())
            zq = zq + e
            r = r - e.detach()
            codes.append(idx)
        return z + (zq - z).detach(), torch.stack(codes, 1), cb_loss, commit

    def _fit(self, z: np.ndarray, seed: int) -> dict[str, tuple[float, ...]]:
        cfg = self.config
        n, d = z.shape
        k, levels = self.codebook_size, self.levels
        bs, epochs, warmup = self._epochs(n)
        x = torch.from_numpy(z)
        curves = ("warmup_recon", "loss", "recon", "codebook", "commit", "restarts")
        hist: dict[str, list[float]] = {name: [] for name in curves}
        with torch.random.fork_rng(devices=[]), _torch_threads(cfg.threads):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(_sub_seed(seed, 1))
            net = _build_net(d, cfg)
            books = nn.Parameter(torch.empty(levels, k, cfg.latent_dim))

            def batches() -> list[torch.Tensor]:
                return list(torch.split(torch.randperm(n, generator=gen), bs))

            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            for _ in range(warmup):
                total = 0.0
                for idx in batches():
                    xb = x[idx]
                    loss = F.mse_loss(net["decoder"](net["encoder"](xb)), xb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                hist["warmup_recon"].append(total / n)

            with torch.no_grad():
                self._init_books(books, net, x, seed)
            opt = torch.optim.Adam([*net.parameters(), books], lr=cfg.lr)
            for _ in range(epochs):
                usage = torch.zeros(levels, k, dtype=torch.long)
                sums = np.zeros(4)
                for idx in batches():
                    xb = x[idx]
                    zq, codes, cb_loss, commit = self._quantize(net["encoder"](xb), books)
                    recon = F.mse_loss(net["decoder"](zq), xb)
                    loss = recon + cb_loss + cfg.beta * commit
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    for level in range(levels):
                        usage[level] += torch.bincount(codes[:, level], minlength=k)
                    sums += np.array([loss.item(), recon.item(), cb_loss.item(), commit.item()]) * len(idx)
                for key, v in zip(("loss", "recon", "codebook", "commit"), sums / n):
                    hist[key].append(float(v))
                restarted = 0
                if cfg.dead_code_restart and bool((usage == 0).any()):
                    with torch.no_grad():
                        restarted = self._restart(books, opt, net, x, usage, gen)
                hist["restarts"].append(float(restarted))
        net.eval()
        self._net, self._books = net, books.detach().clone()
        return {key: tuple(v) for key, v in hist.items()}

    def _latents(self, net: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return (
            torch.cat([net["encoder"](chunk) for chunk in torch.split(x, 8192)])
            if len(x)
            else x.new_zeros((0, self.config.latent_dim))
        )

    def _init_books(self, books: torch.Tensor, net: nn.ModuleDict, x: torch.Tensor, seed: int) -> None:
        if not self.config.kmeans_init:
            # Classic VQ-VAE init: tiny uniform noise (kept as the no-k-means ablation).
            k = self.codebook_size
            books.uniform_(-1.0 / k, 1.0 / k)
            return
        r = self._latents(net, x).numpy().copy()
        for level in range(self.levels):
            book = _kmeans(
                r,
                self.codebook_size,
                seed=_sub_seed(seed, 2, level),
                n_init=1,
                max_iter=100,
                max_points=max(self.codebook_size, 256 * self.codebook_size),
            )
            r -= book[_nearest(r, book)]
            books[level] = torch.from_numpy(book)

    def _restart(
        self,
        books: torch.Tensor,
        opt: torch.optim.Optimizer,
        net: nn.ModuleDict,
        x: torch.Tensor,
        usage: torch.Tensor,
        gen: torch.Generator,
    ) -> int:
        """Move codes unused this epoch onto random current residuals; returns how many moved."""
        rows = torch.randperm(len(x), generator=gen)[: self.config.restart_sample]
        r = self._latents(net, x[rows])
        moments = opt.state.get(books, {})
        moved = 0
        for level in range(self.levels):
            dead = torch.nonzero(usage[level] == 0).reshape(-1)
            if len(dead):
                if len(dead) <= len(r):
                    pick = torch.randperm(len(r), generator=gen)[: len(dead)]
                else:
                    pick = torch.randint(len(r), (len(dead),), generator=gen)
                books[level, dead] = r[pick]
                # Stale Adam moments would immediately drag a re-seeded code away again.
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in moments:
                        moments[key][level, dead] = 0.0
                moved += len(dead)
            # Later levels are re-seeded from residuals under the updated codebook.
            r = r - books[level][_nearest_t(r, books[level])]
        return moved

    # -- inference ----------------------------------------------------------- #

    def _encode_std(self, z: np.ndarray) -> np.ndarray:
        assert self._net is not None and self._books is not None
        with torch.no_grad(), _torch_threads(self.config.threads):
            r = self._latents(self._net, torch.from_numpy(np.ascontiguousarray(z, np.float32)))
            codes = []
            for level in range(self.levels):
                idx = _nearest_t(r, self._books[level])
                r = r - self._books[level][idx]
                codes.append(idx)
        return torch.stack(codes, 1).numpy().astype(np.int64)

    def _decode_std(self, codes: np.ndarray) -> np.ndarray:
        assert self._net is not None and self._books is not None
        c = torch.from_numpy(np.ascontiguousarray(codes, np.int64))
        with torch.no_grad(), _torch_threads(self.config.threads):
            zq = torch.zeros(len(c), self.config.latent_dim)
            for level in range(c.shape[1]):
                zq += self._books[level][c[:, level]]
            out = (
                torch.cat([self._net["decoder"](chunk) for chunk in torch.split(zq, 8192)])
                if len(zq)
                else zq.new_zeros((0, self.input_dim))
            )
        return out.numpy()

    def codebooks(self) -> list[np.ndarray]:
        self._require_fitted("codebooks")
        assert self._books is not None
        return [self._books[level].numpy().copy() for level in range(self.levels)]

    def _state(self) -> dict[str, np.ndarray]:
        assert self._net is not None
        out = {f"net.{name}": t.detach().numpy().astype(np.float32) for name, t in self._net.state_dict().items()}
        out.update({f"codebook.{level}": b for level, b in enumerate(self.codebooks())})
        return out

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        net = _build_net(self.input_dim, self.config)
        weights = {name: torch.from_numpy(_get(state, f"net.{name}").astype(np.float32)) for name in net.state_dict()}
        net.load_state_dict(weights)
        net.eval()
        self._net = net
        self._books = torch.stack(
            [torch.from_numpy(_get(state, f"codebook.{level}").astype(np.float32)) for level in range(self.levels)]
        )
