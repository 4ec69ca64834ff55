"""``predict``: class, confidence and the answering stage for image files, on an export."""

from __future__ import annotations

from dataclasses import dataclass

from basisnet_deploy.artifacts.manifest import Role
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data import load_image
from basisnet_deploy.runtime.backends import make_factory, stage_threads
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.runner import RunnerOptions, TwoStageRunner, exit_threshold


@dataclass(frozen=True)
class RuntimeOptions:
    """Where the two stages run; the CLI's runtime flags map one to one."""

    delegate: str = "xnnpack"  # the specialist's processor; the LM stays on the CPU
    runtime: str | None = None  # None: litert for TFLite exports, onnxruntime for ONNX
    delegate_path: str | None = None
    allow_fallback: bool = False
    threads: int | None = None  # the specialist's; None: chosen from the core count
    form: str | None = None  # specialist form: presynth or coefficient; None: form_for()

    def form_for(self, deployment: Deployment) -> str:
        """The specialist form asked for, else the delegate's among those the export has: the
        coefficient-input form on the GPU (a re-synthesized template is a new model there, a
        new compile: docs/gpu.md), the pre-synthesized one elsewhere."""
        return self.form or default_form(self.delegate, deployment)

    def runtime_for(self, deployment: Deployment) -> str:
        """The export's runtime; ``--runtime`` naming another is refused (onnxruntime read a
        .tflite as a broken protobuf)."""
        runs = deployment.manifest.runtime
        if self.runtime and self.runtime != runs:
            raise UserError(f"--runtime {self.runtime}: {deployment.directory} is a "
                            f"{deployment.manifest.target} export, which {runs} runs; pass "
                            f"--runtime {runs} or leave the option out")
        return runs


@dataclass
class Prediction:
    image: str
    index: int
    name: str  # the class label
    confidence: float
    stage: str  # "lightweight" (early exit) or "specialist"
    times_ms: dict
    specialist_processor: str  # where the specialist ran, e.g. "CPU (XNNPACK)", "GPU"
    fallback: str | None = None  # why, when --allow-fallback replaced the delegate asked for


def predict(directory, image_paths: list[str], options: RuntimeOptions = RuntimeOptions(),
            threshold: float | None = None) -> list[Prediction]:
    """One :class:`Prediction` per image, in order; ``threshold`` None: the manifest's,
    NEVER_EXIT: the specialist answers every image."""
    dep = Deployment(directory)
    runtime = options.runtime_for(dep)
    threads = stage_threads(options.threads)
    form = options.form_for(dep)
    factory = make_factory(runtime, options.delegate, threads["specialist"], options.delegate_path,
                           options.allow_fallback, probe=str(dep.specialist_path(form)),
                           probe_model=dep.specialist_model(form))
    light = make_factory(runtime, "xnnpack" if options.delegate != "cpu" else "cpu",
                         threads["lightweight"])
    side = dep.decode_side  # one figure for every image
    frames = [dep.frame(load_image(p, side)) for p in image_paths]
    threshold = exit_threshold(threshold, dep.threshold)
    run = TwoStageRunner(dep, light, factory,
                         RunnerOptions(threshold=threshold, form=form, mode="sequential"))
    try:
        results = list(run.run(frames))
        # once every session is made (whether XNNPACK took it), and once for every image
        processor, fallback = factory.processor, factory.fallback_note
        return [Prediction(str(path), r.label, r.name, round(r.confidence, 6), r.stage,
                           {k: round(v, 3) for k, v in r.times_ms.items()},
                           processor, fallback)
                for path, r in zip(image_paths, results)]
    finally:
        factory.close()



def default_form(delegate: str, deployment: Deployment) -> str:
    """The specialist form to run when none is asked for (:meth:`RuntimeOptions.form_for`)."""
    preferred = ["coefficient", "presynth"] if delegate == "gpu" else ["presynth", "coefficient"]
    roles = {"coefficient": Role.SPECIALIST_COEFFICIENT, "presynth": Role.SPECIALIST_PRESYNTH}
    return next((f for f in preferred if roles[f] in deployment.artifacts), preferred[0])
