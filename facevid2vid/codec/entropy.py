"""Entropy coding of quantised motion with constriction's range coder.

Per frame, each parameter's index is predicted by its previous decoded index (integer
DPCM, so nothing can drift) and the residual is coded with an adaptive categorical model:

- alphabet: residuals -R..R and one escape symbol; an escaped parameter's index follows,
  coded uniformly over its whole range ``[-max_index, max_index]``;
- models: one per (group, context); groups are angles, translation and expression (each
  family's :mod:`~facevid2vid.codec.layout` assigns its parameters to them); the
  context of a parameter is ``min(|its previous residual|, 2)`` (escape counts as 2), so
  still and moving parameters use different statistics;
- adaptation: integer counts, incremented after each frame and halved when they grow
  large; probabilities are ``counts / total`` in float64, so both sides build identical
  models.

The state lives across packets and is reset at every key frame (a lost packet is only
recovered at the next key frame anyway). The range coder emits 32-bit words; to avoid
paying up to 31 padding bits per packet, the encoder picks, among the code values that
decode to the same symbols, the one with the most trailing zero bits and drops those
zero bytes. The decoder pads with zero bytes to a whole word. The encoder verifies the
shortened payload by decoding it, exactly as the receiver will.
"""
from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from facevid2vid.errors import BitstreamError

RESIDUAL_RANGE = 8  # residuals -R..R are symbols 0..2R
ESCAPE = 2 * RESIDUAL_RANGE + 1
ALPHABET = 2 * RESIDUAL_RANGE + 2
NUM_CONTEXTS = 3
GROUP_ANGLES, GROUP_TRANSLATION, GROUP_EXPRESSION = 0, 1, 2
NUM_GROUPS = 3

# adaptation constants (part of the format: changing them changes the bitstream)
PRIOR_TOTAL = 256
PRIOR_DECAY = (1.6, 0.9, 0.45)  # per context: how fast the prior falls off with |residual|
INCREMENT = 24
COUNT_LIMIT = 4096
TRIM_BYTES = 8  # how many tail bytes the encoder searches over when shortening a payload

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()


def _prior_counts() -> np.ndarray:
    """int64 (NUM_CONTEXTS, ALPHABET): Laplace-shaped start counts, escape rare."""
    r = np.abs(np.arange(-RESIDUAL_RANGE, RESIDUAL_RANGE + 1))
    rows = []
    for decay in PRIOR_DECAY:
        w = np.exp(-decay * r)
        counts = np.maximum(1, np.round(PRIOR_TOTAL * w / w.sum())).astype(np.int64)
        rows.append(np.append(counts, 1))  # escape
    return np.stack(rows)


_PRIOR = _prior_counts()


def parameter_groups(num_keypoints: int, scale: bool = False) -> np.ndarray:
    """Group id of each of the 6 + 3K parameters (7 + 3K with a keypoint scale, coded with the translation)."""
    return np.array([GROUP_ANGLES] * 3 + [GROUP_TRANSLATION] * 3 + [GROUP_EXPRESSION] * (3 * num_keypoints)
                    + [GROUP_TRANSLATION] * scale, dtype=np.int64)


@dataclass
class CoderState:
    """Everything both sides must hold identically between packets."""

    counts: np.ndarray  # int64 (NUM_GROUPS, NUM_CONTEXTS, ALPHABET)
    previous: np.ndarray  # int64 (P,) last decoded indices (the prediction)
    context: np.ndarray  # int64 (P,)

    def copy(self) -> "CoderState":
        return CoderState(self.counts.copy(), self.previous.copy(), self.context.copy())


class MotionEntropyCoder:
    """Encodes/decodes runs of index vectors; both sides keep their own instance in lockstep."""

    def __init__(self, max_indices: np.ndarray, groups: np.ndarray | None = None):
        """``groups`` (P,): each parameter's group (a MotionLayout's); None: face-vid2vid's or LivePortrait's,
        told apart by P."""
        self.max_indices = np.asarray(max_indices, dtype=np.int64)  # (P,)
        if groups is None:
            extra = (len(self.max_indices) - 6) % 3  # 1: the motion ends with a keypoint scale
            groups = parameter_groups((len(self.max_indices) - 6) // 3, scale=extra == 1)
        self.groups = np.asarray(groups, dtype=np.int64)
        if self.groups.shape != self.max_indices.shape or not np.all((0 <= self.groups) & (self.groups < NUM_GROUPS)):
            raise ValueError(f"need a group in 0..{NUM_GROUPS - 1} for each of the {len(self.max_indices)} parameters")
        self.state = self._fresh(np.zeros_like(self.max_indices))

    @property
    def num_parameters(self) -> int:
        return len(self.max_indices)

    def _fresh(self, base: np.ndarray) -> CoderState:
        counts = np.broadcast_to(_PRIOR, (NUM_GROUPS, NUM_CONTEXTS, ALPHABET)).copy()
        return CoderState(counts, np.asarray(base, dtype=np.int64).copy(),
                          np.zeros(len(self.max_indices), dtype=np.int64))

    def reset(self, base: np.ndarray | None = None) -> None:
        """Fresh models; predictions start from ``base`` indices (zeros if None)."""
        if base is None:
            base = np.zeros_like(self.max_indices)
        self.state = self._fresh(base)

    # -- per-frame mechanics shared by encoder and decoder -------------------------------

    def _probabilities(self, state: CoderState) -> np.ndarray:
        rows = state.counts[self.groups, state.context]  # (P, ALPHABET)
        return rows / rows.sum(axis=1, keepdims=True)

    def _advance(self, state: CoderState, symbols: np.ndarray, indices: np.ndarray) -> None:
        np.add.at(state.counts, (self.groups, state.context, symbols), INCREMENT)
        totals = state.counts.sum(axis=2, keepdims=True)
        state.counts = np.where(totals > COUNT_LIMIT, (state.counts + 1) // 2, state.counts)
        residual = np.where(symbols == ESCAPE, NUM_CONTEXTS - 1, np.abs(symbols - RESIDUAL_RANGE))
        state.context = np.minimum(residual, NUM_CONTEXTS - 1)
        state.previous = indices

    def _encode_frame(self, encoder, state: CoderState, indices: np.ndarray) -> None:
        residual = indices - state.previous
        symbols = np.where(np.abs(residual) <= RESIDUAL_RANGE, residual + RESIDUAL_RANGE, ESCAPE)
        encoder.encode(symbols.astype(np.int32), _CATEGORICAL, self._probabilities(state))
        escaped = symbols == ESCAPE
        if escaped.any():
            m = self.max_indices[escaped]
            encoder.encode((indices[escaped] + m).astype(np.int32), _UNIFORM, (2 * m + 1).astype(np.int32))
        self._advance(state, symbols, indices)

    def _decode_frame(self, decoder, state: CoderState) -> np.ndarray:
        symbols = np.asarray(decoder.decode(_CATEGORICAL, self._probabilities(state)), dtype=np.int64)
        indices = state.previous + symbols - RESIDUAL_RANGE
        escaped = symbols == ESCAPE
        if escaped.any():
            m = self.max_indices[escaped]
            raw = np.asarray(decoder.decode(_UNIFORM, (2 * m + 1).astype(np.int32)), dtype=np.int64)
            indices[escaped] = raw - m
        if np.any(np.abs(indices) > self.max_indices):
            bad = int(np.argmax(np.abs(indices) > self.max_indices))
            raise BitstreamError(f"decoded index {int(indices[bad])} of parameter {bad} is out of range")
        self._advance(state, symbols, indices)
        return indices

    # -- public API ----------------------------------------------------------------------

    def encode(self, frames: np.ndarray) -> bytes:
        """int (N, P) indices of N consecutive frames -> payload bytes; advances the state."""
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, self.num_parameters)
        if np.any(np.abs(frames) > self.max_indices):
            raise ValueError("an index exceeds its parameter's range")
        start = self.state.copy()
        encoder = constriction.stream.queue.RangeEncoder()
        for row in frames:
            self._encode_frame(encoder, self.state, row)
        full = encoder.get_compressed().astype(">u4").tobytes()
        short = self._shorten(full, start, frames)
        return short

    def decode(self, payload: bytes, num_frames: int) -> np.ndarray:
        """Payload bytes -> int64 (num_frames, P); advances the state only on success.

        Raises BitstreamError if the payload cannot be decoded or yields out-of-range indices.
        """
        state = self.state.copy()
        out = self._decode_into(state, payload, num_frames)
        self.state = state
        return out

    def _decode_into(self, state: CoderState, payload: bytes, num_frames: int) -> np.ndarray:
        padded = payload + b"\0" * (-len(payload) % 4)
        words = np.frombuffer(padded, dtype=">u4").astype(np.uint32)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            return np.stack([self._decode_frame(decoder, state) for _ in range(num_frames)])
        except (BitstreamError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # constriction: ValueError etc., or a Rust panic (a BaseException)
            raise BitstreamError(f"undecodable motion data ({type(exc).__name__})") from None

    def _decodes_to(self, payload: bytes, start: CoderState, frames: np.ndarray) -> bool:
        try:
            return np.array_equal(self._decode_into(start.copy(), payload, len(frames)), frames)
        except BitstreamError:
            return False

    def _shorten(self, full: bytes, start: CoderState, frames: np.ndarray) -> bytes:
        """Shortest payload that still decodes to ``frames`` (searching the last TRIM_BYTES bytes)."""
        if not full:
            return full
        tail_len = min(TRIM_BYTES, len(full))
        prefix, tail = full[:-tail_len], full[-tail_len:]
        bits = 8 * tail_len

        def valid(value: int) -> bool:
            return self._decodes_to(prefix + value.to_bytes(tail_len, "big"), start, frames)

        original = int.from_bytes(tail, "big")

        def multiple_near(k: int) -> int | None:
            """A valid tail that is a multiple of 2**k: the one below or above the original, if any."""
            below = original >> k << k
            above = below + (1 << k)
            return next((c for c in (below, above) if c < 1 << bits and valid(c)), None)

        # the tails that decode correctly form an interval around the original, so it holds a multiple
        # of 2**k iff one of the two nearest the original is valid, and that holds for all k up to some
        # k_max: binary search for it (about 2 log2(bits) decodes); its multiple is unique
        lo, hi, candidate = 0, bits, original
        while lo < hi:
            mid = (lo + hi + 1) // 2
            found = multiple_near(mid)
            if found is None:
                hi = mid - 1
            else:
                lo, candidate = mid, found
        best = prefix + candidate.to_bytes(tail_len, "big")
        # drop trailing zero bytes, keeping more of them if the decoder needs them
        for n in range(len(best.rstrip(b"\0")), len(best) + 1):
            if self._decodes_to(best[:n], start, frames):
                return best[:n]
        return full
