"""LM int8 weight tuning with the specialist in the loss: the float specialist fed the rounded
LM's coefficients should give the float pipeline's logits. Scores the kept step on 480 held-out
crops (float activations): LM agreement, coef max abs, and the float specialist's disagreements
when fed the tuned LM's coefficients (the LM's share of end-to-end misses)."""
import os, sys, json, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from basisnet_deploy import data
from basisnet_deploy.calibration.images import calibration_images
from basisnet_deploy.model import checkpoint
from basisnet_deploy.quantization import weight_tuning as wt
from basisnet_deploy.quantization.settings import WeightTuning, Augmentation

ckpt, seed, lam = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held_n = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # 0: export's quarter
photos = Path("/tmp/photos2")
net, cfg = checkpoint.load(ckpt)
a, pre = cfg.architecture, cfg.preprocessing
folder = data.image_folder(photos / "heldout")
hl_x, hs_x = tf.constant(folder.tensors(a.light_resolution, pre)), tf.constant(folder.tensors(a.resolution, pre))
calib = calibration_images(str(photos / "train"), 200, seed=seed)
xl = tf.constant(np.stack([data.preprocess(im, a.light_resolution, pre) for im in calib.images]))
xs = tf.constant(np.stack([data.preprocess(im, a.resolution, pre) for im in calib.images]))
model, spec = net.lightweight, net.specialist
trainable = model.trainable_variables
W = wt._Offsets([v.value for v in trainable], wt.tuned_kernels(trainable))
frozen = [v.value for v in model.non_trainable_variables]
def lm(values, x):
    return dict(model.stateless_call(values, frozen, x, training=False)[0])
def sp(x, c):
    o = spec([x, c], training=False)
    return o["logits"] if isinstance(o, dict) else o
scale = {k: 1.0 / float(max(np.var(v.numpy()), 1e-12)) for k, v in lm(W.start, xl).items()}
s_scale = 1.0 / float(np.var(sp(xs, lm(W.start, xl)["coefficients"]).numpy()))
def loss(xl_, xs_, values):
    want, got = lm(W.start, xl_), lm(values, xl_)
    v = tf.add_n([scale[k] * tf.reduce_mean(tf.square(got[k] - want[k])) for k in want])
    if lam:
        v += lam * s_scale * tf.reduce_mean(tf.square(sp(xs_, got["coefficients"]) - sp(xs_, want["coefficients"])))
    return v
tuning = WeightTuning(seed=seed)
count = int(xl.shape[0])
order = np.random.default_rng(seed).permutation(count)
h = held_n or max(1, count // 4)
fit, held = order[h:], order[:h]
fl, fs, hl, hs = tf.gather(xl, fit), tf.gather(xs, fit), tf.gather(xl, held), tf.gather(xs, held)
aug = Augmentation(pre.input_range); rng_v = np.random.default_rng(seed + 1)
def views(bl, bs):
    n = int(bl.shape[0])
    m = (rng_v.random(n) < aug.flip)[:, None, None, None]
    bl, bs = tf.where(m, tf.reverse(bl, [2]), bl), tf.where(m, tf.reverse(bs, [2]), bs)
    side = np.sqrt(rng_v.uniform(*aug.crop_area, n)); top, left = rng_v.uniform(0, 1 - side), rng_v.uniform(0, 1 - side)
    boxes = np.stack([top, left, top + side, left + side], 1).astype(np.float32)
    lo, hi = aug.input_range
    con = rng_v.uniform(*aug.contrast, (n, 1, 1, 1)).astype(np.float32)
    sh = rng_v.uniform(-aug.brightness, aug.brightness, (n, 1, 1, 1)).astype(np.float32)
    out = []
    for img in (bl, bs):
        img = tf.image.crop_and_resize(img, boxes, tf.range(n), tuple(img.shape[1:3]))
        u = (img - lo) / (hi - lo); mean = tf.reduce_mean(u, [1, 2, 3], keepdims=True)
        out.append(tf.clip_by_value((u - mean) * con + mean + sh, 0, 1) * (hi - lo) + lo)
    return out
opt = wt._optimizer(tuning)
@tf.function
def step(bl, bs):
    with tf.GradientTape() as t:
        v = loss(bl, bs, W.rounded())
    opt.apply_gradients(zip(t.gradient(v, W.variables), W.variables))
ref_lm = lm(W.start, hl_x); ref_sp = sp(hs_x, ref_lm["coefficients"]).numpy()
def score(values):
    got = lm(values, hl_x)
    err = float(np.abs(got["coefficients"].numpy() - ref_lm["coefficients"].numpy()).max())
    agree = float(np.mean(got["logits"].numpy().argmax(1) == ref_lm["logits"].numpy().argmax(1)))
    dis = int((sp(hs_x, got["coefficients"]).numpy().argmax(1) != ref_sp.argmax(1)).sum())
    return dict(lm_agree=round(agree, 4), coef_max=round(err, 4), spec_on_lm_coef_disagree=dis)
started = time.time()
nearest = float(loss(hl, hs, W.on_grid())); best = (0, nearest, W.snapshot()); trace = []
rng = np.random.default_rng(seed)
for done in range(1, tuning.steps + 1):
    pick = rng.choice(len(fit), 32, replace=False)
    step(*views(tf.gather(fl, pick), tf.gather(fs, pick)))
    if done % 100 == 0:
        v = float(loss(hl, hs, W.on_grid()))
        trace.append(dict(step=done, held=v, **score(W.on_grid())))
        if v < best[1]:
            best = (done, v, W.snapshot())
W.restore(best[2])
print(json.dumps(dict(ckpt=ckpt, seed=seed, lam=lam, held=len(held), best_step=best[0], seconds=round(time.time() - started),
                      kept=score(W.on_grid()), trace=trace)), flush=True)
