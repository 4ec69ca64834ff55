"""Per-check trace of the LM int8 tuning: held-back loss (mean, max per image) and the 480
held-out photos' agreement / coef max abs, for one checkpoint and seed."""
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from basisnet_deploy import data
from basisnet_deploy.calibration.images import calibration_images
from basisnet_deploy.model import checkpoint
from basisnet_deploy.quantization import weight_tuning as wt
from basisnet_deploy.quantization.settings import WeightTuning, Augmentation

ckpt, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 0.005
ema_decay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
photos = Path("/tmp/photos2")
net, cfg = checkpoint.load(ckpt)
res, pre = cfg.architecture.light_resolution, cfg.preprocessing
held_out = tf.constant(data.image_folder(photos / "heldout").tensors(res, pre))
calib = calibration_images(str(photos / "train"), n, seed=seed)
x = tf.constant(np.stack([data.preprocess(im, res, pre) for im in calib.images]))
model = net.lightweight
trainable = model.trainable_variables
weights = wt._Offsets([v.value for v in trainable], wt.tuned_kernels(trainable))
frozen = [v.value for v in model.non_trainable_variables]
def outputs(values, xs):
    return dict(model.stateless_call(values, frozen, xs, training=False)[0])
ref = outputs(weights.start, held_out)
scale = {k: 1.0 / float(max(np.var(v.numpy()), 1e-12)) for k, v in outputs(weights.start, x).items()}
def per_image(xs, wanted, values):
    got = outputs(values, xs)
    return tf.add_n([scale[k] * tf.reduce_mean(tf.reshape(tf.square(got[k] - wanted[k]), [tf.shape(xs)[0], -1]), 1) for k in wanted])
def loss(xs):
    return tf.reduce_mean(per_image(xs, outputs(weights.start, xs), weights.rounded()))
tuning = WeightTuning(seed=seed, learning_rate=lr)
fit, held = wt._split(int(x.shape[0]), seed)
fx, hx = tf.gather(x, fit), tf.gather(x, held)
hw = outputs(weights.start, hx)
view = wt._Views(Augmentation(pre.input_range), seed)
opt = wt._optimizer(tuning)
@tf.function
def step(b):
    with tf.GradientTape() as t:
        v = loss(b)
    opt.apply_gradients(zip(t.gradient(v, weights.variables), weights.variables))
ema = [tf.Variable(v) for v in weights.variables]
def average():
    for e, v in zip(ema, weights.variables):
        e.assign(ema_decay * e + (1 - ema_decay) * v)
def record(done):
    live = [v.numpy() for v in weights.variables]
    for e, v in zip(ema, weights.variables):
        v.assign(e)
    grid = weights.on_grid()
    for v, l in zip(weights.variables, live):
        v.assign(l)
    hl = per_image(hx, hw, grid).numpy()
    got = outputs(grid, held_out)
    err = np.abs(got["coefficients"].numpy() - ref["coefficients"].numpy()).reshape(len(held_out), -1).max(1)
    agree = float(np.mean(got["logits"].numpy().argmax(1) == ref["logits"].numpy().argmax(1)))
    hcoef = np.abs(outputs(grid, hx)["coefficients"].numpy() - hw["coefficients"].numpy()).reshape(len(held), -1).max(1)
    row = dict(step=done, held_mean=float(hl.mean()), held_max=float(hl.max()), held_coef_max=float(hcoef.max()),
               test_agree=round(agree, 4), test_coef_max=round(float(err.max()), 4), test_p99=round(float(np.percentile(err, 99)), 4))
    print(json.dumps(row), flush=True)
rng = np.random.default_rng(seed)
record(0)
for done in range(1, tuning.steps + 1):
    b = tf.gather(fx, rng.choice(len(fit), 32, replace=False))
    step(view(b))
    average()
    if done % 100 == 0:
        record(done)
