"""
mixllm native core: SIMD kernels and the online-ridge routing pool
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['MAX_LOG_TOKENS', 'N_TERMS', 'Pool', 'available_backends', 'backend_for', 'cpu_features', 'embed_pool', 'k_dot', 'k_gemm_nt', 'k_gemv_rect', 'k_gemv_t', 'k_inverse_cholesky_factor', 'k_pack_panels', 'k_panel_mm', 'k_panel_mm_f32', 'k_panel_mv', 'k_panel_mv_f32', 'k_panel_tmv', 'k_panels_to_f32', 'k_positive_definite', 'k_spd_inverse', 'k_syr', 'set_simd_backend', 'simd_backend']
class Pool:
    """
    Per-LLM online ridge state and MixLLM scoring (see pool.hpp).
    """
    @staticmethod
    def from_snapshot(dim: typing.SupportsInt | typing.SupportsIndex, n_targets: typing.SupportsInt | typing.SupportsIndex, refactor_every: typing.SupportsInt | typing.SupportsIndex, max_rank: typing.SupportsInt | typing.SupportsIndex, state: dict) -> Pool:
        ...
    def __init__(self, dim: typing.SupportsInt | typing.SupportsIndex, n_targets: typing.SupportsInt | typing.SupportsIndex = 2, refactor_every: typing.SupportsInt | typing.SupportsIndex = 4096, max_rank: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def __len__(self) -> int:
        ...
    def add_arm(self, name: str, ridge: typing.SupportsFloat | typing.SupportsIndex, theta0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], input_price: typing.SupportsFloat | typing.SupportsIndex, output_price: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def add_arm_state(self, name: str, A: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Ainv: typing.Any, b: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], theta: typing.Any, n_obs: typing.SupportsInt | typing.SupportsIndex, since_refactor: typing.SupportsInt | typing.SupportsIndex, input_price: typing.SupportsFloat | typing.SupportsIndex, output_price: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        New arm from its exact statistics A and b, factorised exactly. Ainv and theta must be None (ValueError otherwise): the native core derives both from A and b.
        """
    def arm(self, name: str) -> dict:
        ...
    def copy(self) -> Pool:
        """
        A deep copy.
        """
    def fit(self, names: collections.abc.Sequence[str], input_prices: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], output_prices: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], ridge: typing.SupportsFloat | typing.SupportsIndex, Z: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def fit_observed(self, names: collections.abc.Sequence[str], input_prices: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], output_prices: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], ridge: typing.SupportsFloat | typing.SupportsIndex, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], quality: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], output_tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], intercept: bool) -> None:
        """
        The Router's fit: raw queries X (n, dim - intercept) and per-LLM quality and output tokens (n, K), NaN = not observed; the intercept and log1p in the core.
        """
    def n_obs(self) -> list[int]:
        """
        Observations per LLM, in pool order.
        """
    def names(self) -> list[str]:
        ...
    def observe(self, name: str, x: numpy.ndarray, quality: typing.SupportsFloat | typing.SupportsIndex, output_tokens: typing.SupportsFloat | typing.SupportsIndex, weight: typing.SupportsFloat | typing.SupportsIndex, intercept: bool) -> None:
        ...
    def observe_many(self, names: collections.abc.Sequence[str], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], quality: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], output_tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], intercept: bool) -> None:
        """
        The Router's partial_fit: as fit_observed, each LLM's observed rows added in one exact batch.
        """
    def predict(self, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64], list[str]]:
        ...
    def predict_many(self, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], intercept: bool) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64], list[str]]:
        """
        The Router's predict: (quality, output_tokens, bonus), each (n, K), and the names.
        """
    def refactor(self, name: str | None = None) -> None:
        ...
    def remove_arm(self, name: str) -> None:
        ...
    def route_many(self, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], input_tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], inv_lam: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, tau: typing.SupportsFloat | typing.SupportsIndex, intercept: bool) -> numpy.typing.NDArray[numpy.int64]:
        ...
    def route_one(self, x: numpy.ndarray, input_tokens: typing.SupportsFloat | typing.SupportsIndex, inv_lam: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, tau: typing.SupportsFloat | typing.SupportsIndex, intercept: bool) -> tuple[typing.Any, int, tuple, numpy.typing.NDArray[numpy.float64]]:
        ...
    def score(self, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], input_tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], inv_lam: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, tau: typing.SupportsFloat | typing.SupportsIndex, with_terms: bool = False) -> tuple[numpy.typing.NDArray[numpy.int64], typing.Any, list[str]]:
        ...
    def set_discount(self, gamma: typing.SupportsFloat | typing.SupportsIndex, ridge: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Forgetting of online observations: gamma in (0, 1] (1: none), the ridge its pseudo-rows keep (pool.hpp; mixllm.router's docstring). ValueError, nothing changed, for a value out of range.
        """
    def set_prices(self, name: str, input_price: typing.SupportsFloat | typing.SupportsIndex, output_price: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_wait(self, name: str, seconds: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def snapshot(self) -> dict:
        """
        The whole state as arrays (persistence; restored bit for bit by from_snapshot).
        """
    def theta(self, name: str) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def update(self, name: str, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weight: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
    def update_batch(self, name: str, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def version(self) -> int:
        """
        Membership version: changes whenever an LLM is added or removed.
        """
    def wait_folds(self) -> None:
        """
        Block until no background fold of this pool runs.
        """
    @property
    def background_folds(self) -> bool:
        """
        Folds computed by a thread of their own (the default; pool.hpp); off, the update that reaches max_rank computes its fold.
        """
    @background_folds.setter
    def background_folds(self, arg1: bool) -> None:
        ...
    @property
    def dim(self) -> int:
        ...
    @property
    def discount(self) -> float:
        """
        The forgetting factor of online observations (1: none).
        """
    @property
    def exact_bonus(self) -> bool:
        """
        The oracle: every LLM's bonus computed exactly in every decision. Off (the default), an LLM on a base of its own keeps its certified upper bound unless it could win (the choices are the same; pool.hpp).
        """
    @exact_bonus.setter
    def exact_bonus(self, arg1: bool) -> None:
        ...
    @property
    def float32(self) -> bool:
        """
        Opt-in reduced-precision scoring: score/predict whiten the queries with the bases' float32 triangles (float64 sums); the state stays float64.
        """
    @float32.setter
    def float32(self, arg1: bool) -> None:
        ...
    @property
    def max_rank(self) -> int:
        ...
    @property
    def n_targets(self) -> int:
        ...
    @property
    def refactor_every(self) -> int:
        ...
def available_backends() -> list[str]:
    """
    Backends this CPU can run, 'scalar' first and the best last.
    """
def backend_for(features: collections.abc.Set[str]) -> str:
    """
    The best backend for a CPU with these features (names as in cpu_features()): the dispatch's decision, a pure function.
    """
def cpu_features() -> dict:
    """
    This CPU's features the dispatch reads (instruction sets; os_avx and os_avx512: the operating system saves the AVX and AVX-512 registers).
    """
def embed_pool(table: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], weights: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], offsets: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> numpy.typing.NDArray[numpy.float32]:
    """
    Static text embeddings (the static encoder's pooling), float32 (vocab, dim) table,
    float32 weights (vocab,), int32 ids and int64 offsets (B + 1,): text b owns
    ids[offsets[b]:offsets[b+1]]; returns (B, dim) float32, row b the L2-normalised
    sum of weights[i] * table[i] over its ids (zero for a text without tokens). Raises
    ValueError for an id outside the table or malformed offsets. Error bound against
    float64: cpp/include/mixllm/kernels.hpp.
    """
def k_dot(a: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], b: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> float:
    ...
def k_gemm_nt(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    """
    G = X Y^T by the active backend's gemm_nt.
    """
def k_gemv_rect(M: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_gemv_t(M: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_inverse_cholesky_factor(A: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> typing.Any:
    """
    R = L^{-1} (packed lower triangle) for A = L L^T, or None.
    """
def k_pack_panels(Rp: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panel_mm(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panel_mm_f32(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panel_mv(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panel_mv_f32(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panel_tmv(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def k_panels_to_f32(P: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    ...
def k_positive_definite(A: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> bool:
    """
    Whether the Cholesky factorisation of A succeeds.
    """
def k_spd_inverse(A: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> typing.Any:
    """
    A^{-1} of a symmetric positive-definite A, or None.
    """
def k_syr(M: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], u: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], c: typing.SupportsFloat | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
    ...
def set_simd_backend(name: str) -> None:
    """
    Force a kernel table by name (ValueError if unavailable).
    """
def simd_backend() -> str:
    """
    Name of the kernel table in use: 'scalar', 'avx2' or 'avx512'.
    """
MAX_LOG_TOKENS: float = 20.0
N_TERMS: int = 6
