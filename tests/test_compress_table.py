"""The compression table over seeds (lowres_jax/compress/table.py) on hand-made stage rows."""

from lowres_jax.compress.table import Target, format_table


def _rows(finetune, student, latency_b256):
  common = {"disk_bytes": 2048, "timing/latency_b1_ms": 1.0}
  return [
      {"stage": "finetune", "test/accuracy": finetune, "model/params": 1000,
       "model/nonzero_params": 1000, "timing/latency_b256_ms": latency_b256[0], **common},
      {"stage": "quantize", "test/accuracy": student, "model/params": 200,
       "model/nonzero_params": 100, "prune/sparsity": 0.5,
       "timing/latency_b256_ms": latency_b256[1], **common}]


def test_table_reports_paired_deltas_medians_and_targets_met_or_missed():
  runs = [_rows(0.80, 0.79, (10.0, 4.0)), _rows(0.70, 0.70, (12.0, 4.0)),
          _rows(0.75, 0.73, (11.0, 5.0))]
  text = format_table(runs, "T", "python x", "a note", [
      Target("small", "quantize", "finetune", -0.015, max_param_ratio=0.25, min_speedup=2.5),
      Target("strict", "quantize", "finetune", 0.0, min_sparsity=0.6, min_speedup=3.0)])
  # Mean accuracy 75.0 and 74.0; paired differences -1, 0, -2 points: mean -1.0.
  assert "| finetune | 75.0 ± " in text and "| quantize | 74.0 ± " in text
  assert "| -1.0 ± 2.5 |" in text
  # Medians: 11.0 ms and 4.0 ms -> 2.75x.
  assert "| 11.00 |" in text and "| 2.75x |" in text
  assert "accuracy -1.00 points vs finetune (target >= -1.5): met" in text
  assert "parameters 0.200 of finetune's (target <= 0.25): met" in text
  assert "batch-256 speed-up 2.75x (target >= 2.5x): met" in text
  assert "(target >= +0.0): missed by 1.00" in text
  assert "sparsity 0.500 of the pruned weights (target >= 0.6): missed" in text
  # A missed speed-up says how far short it is as a ratio (3.0 / 2.75), not a difference.
  assert "batch-256 speed-up 2.75x (target >= 3x): missed (1.1 times short)" in text
  assert text.endswith("a note\n")
