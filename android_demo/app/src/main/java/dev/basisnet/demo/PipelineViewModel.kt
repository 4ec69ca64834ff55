package dev.basisnet.demo

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.basisnet.core.FrameResult
import dev.basisnet.core.PipelineStats
import dev.basisnet.core.ResynthesisPolicy
import dev.basisnet.core.Stages
import dev.basisnet.core.TwoStagePipeline
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock

enum class SpecialistForm(val label: String, val role: String) {
    PRESYNTH("Pre-synthesized", "specialist_presynth"),
    COEFFICIENT("Coefficient-input", "specialist_coefficient"),
}

data class Settings(
    val form: SpecialistForm = SpecialistForm.PRESYNTH,
    val processor: Processor = Processor.GPU,
    val mode: TwoStagePipeline.Mode = TwoStagePipeline.Mode.PIPELINED,
    /** Early-exit confidence; null never exits. Starts at the manifest's calibrated value. */
    val threshold: Float? = null,
)

data class UiState(
    val settings: Settings = Settings(),
    val status: String = "loading models…",
    val error: String? = null,
    val labels: List<String> = emptyList(),
    val calibratedThreshold: Float? = null,
    val last: FrameResult? = null,
    val stats: PipelineStats.Snapshot? = null,
    val lightweightProcessor: String = "",
    val specialistProcessor: String = "",
    val rejectedFrames: Long = 0,
)

/**
 * Owns the two-stage pipeline. Camera frames come in on the analyzer thread through [onFrame]
 * (refused, and so dropped, while the pipeline is full: the camera keeps only the latest frame);
 * results come back in order on the specialist thread and are folded into [state].
 */
class PipelineViewModel(application: Application) : AndroidViewModel(application) {
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()

    private val rebuild = Mutex()
    @Volatile private var pipeline: TwoStagePipeline<Frame>? = null
    private var assets: BasisNetAssets? = null
    private var stats = PipelineStats(WINDOW)

    init {
        viewModelScope.launch(Dispatchers.IO) {
            try {
                val loaded = BasisNetAssets.load(getApplication())
                assets = loaded
                val m = loaded.manifest
                val form = if (m.hasArtifact("specialist_presynth")) SpecialistForm.PRESYNTH else SpecialistForm.COEFFICIENT
                val settings = Settings(form = form, threshold = m.threshold)
                _state.update { it.copy(labels = m.labels, calibratedThreshold = m.threshold, settings = settings) }
                apply(settings)
            } catch (e: Exception) {
                _state.update { it.copy(status = "cannot start", error = e.message ?: e.toString()) }
            }
        }
    }

    /** Called for every analysis frame; never blocks the camera. */
    fun onFrame(frame: Frame) {
        pipeline?.offer(frame)
    }

    fun setThreshold(value: Float?) {
        pipeline?.setThreshold(value)
        _state.update { it.copy(settings = it.settings.copy(threshold = value)) }
    }

    /** Rebuilds the pipeline for new settings; each stage is created on its own thread. */
    fun apply(settings: Settings) {
        val loaded = assets ?: return
        viewModelScope.launch(Dispatchers.IO) {
            rebuild.withLock {
                pipeline?.let { old -> pipeline = null; old.close() }
                stats = PipelineStats(WINDOW)
                _state.update { it.copy(settings = settings, status = "starting ${settings.form.label} on ${settings.processor.label}…", last = null, stats = null, error = null) }
                val policy = ResynthesisPolicy(RESYNTHESIS_TOLERANCE, 0)
                val light = Stages.Factory<Stages.Lightweight<Frame>> { LightweightStage(loaded) }
                val specialist = Stages.Factory<Stages.Specialist<Frame>> {
                    when (settings.form) {
                        SpecialistForm.PRESYNTH -> PresynthStage(loaded, settings.processor, policy)
                        SpecialistForm.COEFFICIENT -> CoefficientSpecialist(loaded, settings.processor)
                    }
                }
                val next = TwoStagePipeline(
                    light, specialist, settings.threshold, settings.mode, MAX_IN_FLIGHT,
                    TwoStagePipeline.Listener { onResult(it) },
                )
                try {
                    next.awaitReady()
                    pipeline = next
                    _state.update {
                        it.copy(
                            status = "running",
                            lightweightProcessor = next.lightweightProcessor(),
                            specialistProcessor = next.specialistProcessor(),
                        )
                    }
                } catch (e: Exception) {
                    next.close()
                    _state.update { it.copy(status = "cannot start", error = e.message ?: e.toString()) }
                }
            }
        }
    }

    private fun onResult(result: FrameResult) {
        stats.add(result)
        val p = pipeline
        _state.update {
            it.copy(
                last = if (result.error == null) result else it.last,
                error = result.error?.let { e -> "frame ${result.index}: ${e.message ?: e}" } ?: it.error,
                stats = stats.snapshot(),
                rejectedFrames = p?.rejected() ?: it.rejectedFrames,
            )
        }
    }

    override fun onCleared() {
        pipeline?.close()
        pipeline = null
    }

    private companion object {
        const val WINDOW = 30
        const val MAX_IN_FLIGHT = 2 // one frame per stage: the lightweight previews t+1 while the specialist runs t
        const val RESYNTHESIS_TOLERANCE = 0.0 // exact, like the Python runner's default
    }
}
