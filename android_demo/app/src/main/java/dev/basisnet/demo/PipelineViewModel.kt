package dev.basisnet.demo

import android.app.Application
import android.util.Log
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.basisnet.core.DemoSettings
import dev.basisnet.core.FramePool
import dev.basisnet.core.FrameResult
import dev.basisnet.core.PipelineController
import dev.basisnet.core.PipelineStats
import dev.basisnet.core.PixelFrame
import dev.basisnet.core.Placement
import dev.basisnet.core.Stages
import dev.basisnet.core.TwoStagePipeline
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch

data class UiState(
    val settings: DemoSettings? = null,
    val forms: List<DemoSettings.Form> = emptyList(),
    val processors: Set<Placement.Processor> = setOf(Placement.Processor.CPU),
    /** Forms whose artifact the export says the GPU refuses or miscomputes, with the one-line reason and fix. */
    val gpuProblems: Map<DemoSettings.Form, String> = emptyMap(),
    val status: String = "loading models…",
    /** Start-up failure (missing, foreign or tampered asset, newer schema): the error screen. */
    val fatal: String? = null,
    /** A setting that could not start, or a failed frame; the app stays usable. */
    val error: String? = null,
    val labels: List<String> = emptyList(),
    val calibratedThreshold: Float? = null,
    val last: FrameResult? = null,
    val stats: PipelineStats.Snapshot? = null,
    val lightweightProcessor: String = "",
    val specialistProcessor: String = "",
    val refusedFrames: Long = 0,
)

/**
 * A thin shell over the core's [PipelineController]: it loads the assets off the main thread,
 * turns controller events into [state], and hands camera frames over. Rebuilds and teardown run
 * on the controller's own thread, never the main thread.
 */
class PipelineViewModel(application: Application) : AndroidViewModel(application) {
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()

    /** Full-frame buffers, recycled: two frames inside the pipeline plus one being filled. */
    val framePool = FramePool(MAX_IN_FLIGHT + 1)

    @Volatile private var controller: PipelineController<DemoSettings, PixelFrame>? = null

    init {
        viewModelScope.launch(Dispatchers.IO) { start() }
    }

    private fun start() {
        val assets = try {
            BasisNetAssets.load(getApplication())
        } catch (e: Exception) {
            Log.e(TAG, "cannot start", e)
            _state.update { it.copy(status = "cannot start", fatal = e.message ?: e.toString()) }
            return
        }
        val available = LiteRt.available()
        val manifest = assets.manifest
        val settings = DemoSettings.defaults(manifest, available)
        Log.i(TAG, "defaults: $settings; specialist: ${settings.label(manifest, available)}")
        _state.update {
            it.copy(
                settings = settings, forms = DemoSettings.forms(manifest), processors = available,
                gpuProblems = DemoSettings.forms(manifest)
                    .mapNotNull { f -> manifest.artifact(f.role).gpuProblem()?.let { f to it } }.toMap(),
                labels = manifest.labels, calibratedThreshold = manifest.threshold,
            )
        }
        val c = PipelineController(Factory(assets, available), Events(), framePool::release, WINDOW, CLOSE_WAIT_MS)
        controller = c
        c.apply(settings)
    }

    /** Called on the analyzer thread for every frame; never blocks, never throws, releases refused frames. */
    fun onFrame(frame: PixelFrame) {
        val c = controller
        if (c == null) framePool.release(frame) else c.offer(frame)
    }

    fun apply(settings: DemoSettings) {
        _state.update { it.copy(settings = settings) }
        controller?.apply(settings)
    }

    fun setThreshold(value: Float?) {
        controller?.setThreshold(value)
        _state.update { it.copy(settings = it.settings?.withThreshold(value)) }
    }

    override fun onCleared() {
        controller?.closeAsync() // returns at once: the stages close on their own threads
        controller = null
    }

    private class Factory(val assets: BasisNetAssets, val available: Set<Placement.Processor>) :
        PipelineController.Factory<DemoSettings, PixelFrame> {
        override fun create(
            settings: DemoSettings,
            listener: TwoStagePipeline.Listener,
            release: java.util.function.Consumer<in PixelFrame>,
        ): TwoStagePipeline<PixelFrame> {
            val light = Stages.Factory<Stages.Lightweight<PixelFrame>> { LightweightStage(assets) }
            val specialist = Stages.Factory<Stages.Specialist<PixelFrame>> {
                when (settings.form) {
                    DemoSettings.Form.PRESYNTH -> PresynthStage(assets, settings.specialistProcessor, available, settings.policy())
                    DemoSettings.Form.COEFFICIENT -> CoefficientStage(assets, settings.specialistProcessor, available)
                }
            }
            return TwoStagePipeline(light, specialist, settings.threshold, settings.mode, MAX_IN_FLIGHT, listener, release)
        }
    }

    private inner class Events : PipelineController.Events<DemoSettings> {
        override fun onStarting(settings: DemoSettings) {
            _state.update { it.copy(status = "starting $settings…", last = null, stats = null, error = null) }
        }

        override fun onRunning(settings: DemoSettings, lightweightProcessor: String, specialistProcessor: String) {
            Log.i(TAG, "running $settings: lightweight on $lightweightProcessor, specialist on $specialistProcessor")
            _state.update {
                it.copy(status = "running", lightweightProcessor = lightweightProcessor, specialistProcessor = specialistProcessor)
            }
        }

        override fun onFailed(settings: DemoSettings, error: Exception) {
            Log.e(TAG, "cannot start $settings", error)
            _state.update { it.copy(status = "cannot start $settings", error = error.message ?: error.toString()) }
        }

        override fun onResult(result: FrameResult, stats: PipelineStats.Snapshot) {
            result.error?.let { Log.w(TAG, "frame ${result.index} failed", it) }
            _state.update { ui ->
                ui.copy(
                    last = if (result.error == null) result else ui.last,
                    error = result.error?.let { e -> "frame ${result.index}: ${e.message ?: e}" } ?: ui.error,
                    stats = stats,
                    refusedFrames = controller?.refused() ?: ui.refusedFrames,
                )
            }
        }
    }

    private companion object {
        const val TAG = "BasisNetDemo"
        const val WINDOW = 30
        const val MAX_IN_FLIGHT = 2 // one frame per stage: the lightweight previews t+1 while the specialist runs t
        const val CLOSE_WAIT_MS = 3000L
    }
}
