"""ViT shapes and options, and checkpoint conversion round trips (no torch needed).

The round trips write our randomly initialised parameters under the names of the public
checkpoint formats (the inverse mappings live here, independent of ``vit_convert``), read
them back through the converters and check the model computes the same outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lowres_jax.models import vit, vit_convert

SMALL = dict(hidden=16, depth=2, num_heads=2, mlp_dim=32, patch_size=4)


def images(size=16, batch=2, seed=0):
  return {"image": jax.random.randint(jax.random.PRNGKey(seed), (batch, size, size, 3), 0, 256,
                                      jnp.int32).astype(jnp.uint8)}


def random_params(model, batch, seed=1):
  """An init with every leaf random (the head is zero-initialised, LayerNorms are 1/0)."""
  params = model.init(jax.random.PRNGKey(seed), batch)["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32),
                      params)


def apply(model, variables, batch, train=False, rngs=None):
  """``model.apply`` op by op: on a small CPU that beats compiling each model whole."""
  return model.apply(variables, batch, train=train, rngs=rngs)


def flat(params):
  return {"params/" + k: np.asarray(v) for k, v in
          traverse_util.flatten_dict(params, sep="/").items()}


def nested(variables):
  return traverse_util.unflatten_dict(dict(variables), sep="/")


@pytest.mark.parametrize("variant, size, tokens", [
    ("Ti/16", 32, 4), ("Ti/32", 64, 4), ("S/16", 48, 9), ("B/16", 32, 4), ("B/32", 64, 4),
    ("L/16", 32, 4), ("B", 32, 4)])
def test_variant_shapes(variant, size, tokens):
  model = vit.ViT(num_classes=5, variant=variant)
  batch = images(size)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  (logits, out) = jax.eval_shape(model.apply, variables, batch)
  arch = vit.decode_variant(variant)
  params = variables["params"]
  assert logits.shape == (2, 5)
  assert out["pre_logits"].shape == (2, arch["hidden"])
  assert out[f"block_{arch['depth'] - 1}"].shape == (2, tokens + 1, arch["hidden"])
  assert f"block_{arch['depth']}" not in params
  assert params["pos_embedding"].shape == (1, tokens, arch["hidden"])
  assert params["embedding"]["kernel"].shape == (arch["patch_size"],) * 2 + (3, arch["hidden"])
  assert params["block_0"]["mlp_in"]["kernel"].shape == (arch["hidden"], arch["mlp_dim"])


def test_ti_variants_run_and_fields_override():
  model = vit.ViT(num_classes=3, variant="Ti/16", depth=1)
  batch = images(32)
  params = model.init(jax.random.PRNGKey(0), batch)["params"]
  assert set(k for k in params if k.startswith("block_")) == {"block_0"}
  logits, out = apply(model, {"params": params}, batch)
  assert logits.shape == (2, 3) and out["pre_logits"].shape == (2, 192)
  np.testing.assert_array_equal(logits, 0.0)  # zero-initialised head
  default = vit.ViT(num_classes=3).arch()
  assert default == dict(patch_size=4, hidden=64, depth=4, num_heads=4, mlp_dim=128)
  with pytest.raises(ValueError, match="unknown ViT variant"):
    vit.ViT(num_classes=3, variant="X/16").arch()


def test_cls_and_gap_pooling():
  batch = images()
  cls_model = vit.ViT(num_classes=3, pool="cls", **SMALL)
  gap_model = vit.ViT(num_classes=3, pool="gap", **SMALL)
  cls_params = random_params(cls_model, batch)
  gap_params = random_params(gap_model, batch)
  assert "cls" in cls_params and "cls" not in gap_params
  _, cls_out = apply(cls_model, {"params": cls_params}, batch)
  _, gap_out = apply(gap_model, {"params": gap_params}, batch)
  assert cls_out["encoded"].shape == (2, 17, 16) and gap_out["encoded"].shape == (2, 16, 16)
  np.testing.assert_allclose(cls_out["pre_logits"], cls_out["encoded"][:, 0])
  np.testing.assert_allclose(gap_out["pre_logits"], gap_out["encoded"].mean(axis=1), atol=1e-6)


def test_inputs_dropout_and_dtype():
  model = vit.ViT(num_classes=3, dropout=0.5, image_size=16, **SMALL)
  batch = images(size=8)
  params = random_params(model, batch)
  grey = {"image": batch["image"][..., :1]}
  (eval_logits, _) = apply(model, {"params": params}, batch)  # no dropout rng needed
  as_float = {"image": batch["image"].astype(jnp.float32)}
  np.testing.assert_allclose(apply(model, {"params": params}, as_float)[0], eval_logits)
  assert apply(model, {"params": params}, grey)[0].shape == (2, 3)  # grey repeated to RGB
  with pytest.raises(Exception, match="dropout"):
    apply(model, {"params": params}, batch, train=True)
  train_logits, _ = apply(model, {"params": params}, batch, train=True,
                                rngs={"dropout": jax.random.PRNGKey(0)})
  assert not np.allclose(train_logits, eval_logits)
  half = vit.ViT(num_classes=3, dtype=jnp.bfloat16, image_size=16, **SMALL)
  logits, out = apply(half, {"params": params}, batch)
  assert logits.dtype == jnp.bfloat16 and out["pre_logits"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(logits, np.float32), eval_logits, atol=0.1, rtol=0.1)


# --- inverse mappings: our flat names -> checkpoint names -------------------------------

def to_vision_transformer(params, depth):
  """The first JAX release: cls inside the posemb table, modules numbered across types."""
  p, heads, hd = flat(params), SMALL["num_heads"], SMALL["hidden"] // SMALL["num_heads"]
  offset = np.random.default_rng(0).normal(size=p["params/cls"].shape).astype(np.float32)
  out = {"embedding/kernel": p["params/embedding/kernel"],
         "embedding/bias": p["params/embedding/bias"],
         "cls": p["params/cls"] - offset,
         "Transformer/posembed_input/pos_embedding":
             np.concatenate([offset, p["params/pos_embedding"]], axis=1),
         "Transformer/encoder_norm/scale": p["params/norm_final/scale"],
         "Transformer/encoder_norm/bias": p["params/norm_final/bias"],
         "head/kernel": p["params/head/kernel"], "head/bias": p["params/head/bias"],
         "pre_logits/kernel": np.zeros((16, 16), np.float32)}
  for i in range(depth):
    src, dst = f"params/block_{i}/", f"Transformer/encoderblock_{i}/"
    for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
      out[dst + theirs + "/scale"] = p[src + ours + "/scale"]
      out[dst + theirs + "/bias"] = p[src + ours + "/bias"]
    for ours, theirs in (("mlp_in", "Dense_0"), ("mlp_out", "Dense_1")):
      out[dst + "MlpBlock_3/" + theirs + "/kernel"] = p[src + ours + "/kernel"]
      out[dst + "MlpBlock_3/" + theirs + "/bias"] = p[src + ours + "/bias"]
    mha = dst + "MultiHeadDotProductAttention_1/"
    for proj in ("query", "key", "value"):
      out[mha + proj + "/kernel"] = p[src + f"attention/{proj}/kernel"].reshape(-1, heads, hd)
      out[mha + proj + "/bias"] = p[src + f"attention/{proj}/bias"].reshape(heads, hd)
    out[mha + "out/kernel"] = p[src + "attention/out/kernel"].reshape(heads, hd, -1)
    out[mha + "out/bias"] = p[src + "attention/out/bias"]
  return out


def to_big_vision_scanned(params, depth):
  """big_vision: ``params/`` prefix, top-level posemb without cls, scanned blocks."""
  old = to_vision_transformer(params, depth)
  out = {"params/" + k: v for k, v in old.items()
         if not k.startswith(("Transformer/encoderblock_", "Transformer/posembed", "pre_l"))}
  out["params/pos_embedding"] = flat(params)["params/pos_embedding"]
  out["params/cls"] = flat(params)["params/cls"]
  out["params/MAPHead_0/probe"] = np.zeros((1, 1, 16), np.float32)
  renames = {"LayerNorm_2": "LayerNorm_1", "MlpBlock_3": "MlpBlock_0",
             "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0"}
  suffixes = {k.split("/", 2)[2] for k in old if k.startswith("Transformer/encoderblock_0/")}
  for suffix in suffixes:
    module, rest = suffix.split("/", 1)
    out[f"params/Transformer/encoderblock/{renames.get(module, module)}/{rest}"] = np.stack(
        [old[f"Transformer/encoderblock_{i}/{suffix}"] for i in range(depth)])
  return out


def to_hugging_face(params, depth):
  """``ViTForImageClassification`` names and torch layouts, with an unused pooler."""
  p = flat(params)
  out = {"vit.embeddings.cls_token": p["params/cls"] - 0.5,
         "vit.embeddings.position_embeddings": np.concatenate(
             [np.full_like(p["params/cls"], 0.5), p["params/pos_embedding"]], axis=1),
         "vit.embeddings.patch_embeddings.projection.weight":
             p["params/embedding/kernel"].transpose(3, 2, 0, 1),
         "vit.embeddings.patch_embeddings.projection.bias": p["params/embedding/bias"],
         "vit.layernorm.weight": p["params/norm_final/scale"],
         "vit.layernorm.bias": p["params/norm_final/bias"],
         "classifier.weight": p["params/head/kernel"].T, "classifier.bias": p["params/head/bias"],
         "vit.pooler.dense.weight": np.eye(16, dtype=np.float32)}
  names = {"attention/query": "attention.attention.query", "attention/key":
           "attention.attention.key", "attention/value": "attention.attention.value",
           "attention/out": "attention.output.dense", "mlp_in": "intermediate.dense",
           "mlp_out": "output.dense"}
  for i in range(depth):
    src, dst = f"params/block_{i}/", f"vit.encoder.layer.{i}."
    for ours, theirs in names.items():
      out[dst + theirs + ".weight"] = p[src + ours + "/kernel"].T
      out[dst + theirs + ".bias"] = p[src + ours + "/bias"]
    for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
      out[dst + theirs + ".weight"] = p[src + ours + "/scale"]
      out[dst + theirs + ".bias"] = p[src + ours + "/bias"]
  return out


@pytest.mark.parametrize("writer, unused", [
    (to_vision_transformer, ["pre_logits/kernel"]),
    (to_big_vision_scanned, ["params/MAPHead_0/probe"]),
    (to_hugging_face, ["vit.pooler.dense.weight"])])
def test_checkpoint_round_trip(tmp_path, writer, unused):
  model = vit.ViT(num_classes=3, **SMALL)
  batch = images()
  params = random_params(model, batch)
  path = tmp_path / "checkpoint.npz"
  np.savez(path, **writer(params, SMALL["depth"]))
  with np.load(path) as npz:
    variables, left = vit_convert.detect_and_convert(dict(npz))
  assert left == unused
  assert set(variables) == set(flat(params))
  for name, value in flat(params).items():
    np.testing.assert_allclose(variables[name], value, atol=1e-6, err_msg=name)
  expected = apply(model, {"params": params}, batch)
  got = apply(model, nested(variables), batch)
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1]["pre_logits"], expected[1]["pre_logits"], rtol=1e-5,
                             atol=1e-5)


def test_detect_rejects_unknown_checkpoints():
  with pytest.raises(ValueError, match="not a ViT checkpoint"):
    vit_convert.detect_and_convert({"conv1/kernel": np.zeros(3)})


def test_posemb_resampled_bilinearly_to_the_model_grid():
  """A 2x2-grid checkpoint (8 px, patch 4) loaded into a 4x4-grid model (16 px)."""
  small = vit.ViT(num_classes=3, **SMALL)
  params = random_params(small, images(size=8))
  old = flat(params)["params/pos_embedding"]
  assert old.shape == (1, 4, 16)
  model = vit.ViT(num_classes=3, image_size=16, **SMALL)
  abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), images(size=8))
  shapes = {k: v.shape for k, v in traverse_util.flatten_dict(abstract, sep="/").items()}
  adapted = vit_convert.adapt_to_model(flat(params), shapes)
  # Half-pixel bilinear 2 -> 4 samples at -0.25, 0.25, 0.75, 1.25 (clamped at the edges).
  weights = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], np.float32)
  grid = old.reshape(2, 2, 16)
  expected = np.einsum("ia,jb,abd->ijd", weights, weights, grid).reshape(1, 16, 16)
  np.testing.assert_allclose(adapted["params/pos_embedding"], expected, atol=1e-6)
  np.testing.assert_allclose(adapted["params/cls"], flat(params)["params/cls"])
  logits, _ = apply(model, nested(adapted), images(size=8))
  assert logits.shape == (2, 3)
  # A leading class token stays in front, unchanged.
  with_cls = np.concatenate([np.ones((1, 1, 16), np.float32), old], axis=1)
  resampled = vit_convert.resample_posemb(with_cls, (4, 4))
  np.testing.assert_array_equal(resampled[:, 0], 1.0)
  np.testing.assert_allclose(resampled[:, 1:], expected, atol=1e-6)
  reference = jax.image.resize(grid, (4, 4, 16), "bilinear")
  np.testing.assert_allclose(resampled[0, 1:].reshape(4, 4, 16), reference, atol=1e-6)
