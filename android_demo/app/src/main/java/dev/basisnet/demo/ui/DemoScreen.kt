package dev.basisnet.demo.ui

import android.util.Size
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Slider
import androidx.compose.material3.Surface
import androidx.compose.material3.Switch
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.remember
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.text.font.FontFamily
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import androidx.lifecycle.compose.LocalLifecycleOwner
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.basisnet.core.DemoSettings
import dev.basisnet.core.FrameResult
import dev.basisnet.core.Placement
import dev.basisnet.core.TwoStagePipeline
import dev.basisnet.demo.PipelineViewModel
import dev.basisnet.demo.UiState
import dev.basisnet.demo.toPixelFrame
import java.util.Locale
import java.util.concurrent.Executors

enum class CameraPermission { ASKING, GRANTED, REFUSED }

@Composable
fun DemoScreen(viewModel: PipelineViewModel, permission: CameraPermission, onAskAgain: () -> Unit) {
    val state by viewModel.state.collectAsStateWithLifecycle()
    MaterialTheme {
        Box(Modifier.fillMaxSize().background(Color.Black)) {
            val fatal = state.fatal
            when {
                fatal != null -> Message("The app cannot start", fatal, null, {})
                permission == CameraPermission.REFUSED ->
                    Message("Camera permission refused", "The demo classifies camera frames; it needs the camera.", "Ask again", onAskAgain)
                permission == CameraPermission.GRANTED -> {
                    CameraFeed(viewModel)
                    Column(Modifier.fillMaxSize().safeDrawingPadding(), verticalArrangement = Arrangement.SpaceBetween) {
                        Overlay(state)
                        Controls(state, viewModel)
                    }
                }
                else -> Message("Waiting for the camera permission", "", null, {})
            }
        }
    }
}

/** A full-screen message: a start-up error names the asset and the command that fixes it. */
@Composable
private fun Message(title: String, body: String, action: String?, onAction: () -> Unit) {
    Column(Modifier.fillMaxSize().padding(24.dp), verticalArrangement = Arrangement.Center) {
        Text(title, color = Color.White, style = MaterialTheme.typography.headlineMedium)
        Text(body, color = Color(0xFFFF8A80), style = MaterialTheme.typography.bodyMedium)
        if (action != null) Button(onClick = onAction) { Text(action) }
    }
}

/** CameraX preview plus an ImageAnalysis stream (KEEP_ONLY_LATEST, RGBA) into the pipeline. */
@Composable
private fun CameraFeed(viewModel: PipelineViewModel) {
    val context = LocalContext.current
    val lifecycleOwner = LocalLifecycleOwner.current
    val previewView = remember { PreviewView(context) }
    DisposableEffect(lifecycleOwner) {
        val analyzerThread = Executors.newSingleThreadExecutor()
        val providerFuture = ProcessCameraProvider.getInstance(context)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val preview = Preview.Builder().build()
            preview.setSurfaceProvider(previewView.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(
                    ResolutionSelector.Builder()
                        .setResolutionStrategy(
                            ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER),
                        )
                        .build(),
                )
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analyzerThread) { proxy ->
                // Copy out (pooled buffer) and close the proxy at once, so CameraX can deliver the next frame.
                val frame = proxy.use { it.toPixelFrame(viewModel.framePool) }
                viewModel.onFrame(frame)
            }
            provider.unbindAll()
            provider.bindToLifecycle(lifecycleOwner, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(context))
        onDispose {
            if (providerFuture.isDone) providerFuture.get().unbindAll()
            analyzerThread.shutdown()
        }
    }
    AndroidView(factory = { previewView }, modifier = Modifier.fillMaxSize())
}

private fun ms(v: Double) = if (v.isNaN()) "–" else String.format(Locale.US, "%.1f ms", v)

private fun pct(v: Double) = String.format(Locale.US, "%.0f%%", 100 * v)

private fun labelOf(state: UiState, result: FrameResult): String =
    state.labels.getOrElse(result.label) { index -> "#$index" }

/** Top-1 and confidence, which stage answered, per-stage latency, frames/s, exit rate, processors. */
@Composable
private fun Overlay(state: UiState) {
    Surface(color = Color(0xAA000000), modifier = Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            val last = state.last
            Text(
                if (last == null) state.status else "${labelOf(state, last)}  ${pct(last.confidence.toDouble())}",
                color = Color.White, style = MaterialTheme.typography.headlineMedium,
            )
            val mono = MaterialTheme.typography.bodySmall.copy(fontFamily = FontFamily.Monospace, color = Color.White)
            if (last != null) {
                Text("answered by  ${if (last.earlyExit()) "lightweight (early exit)" else "specialist"}", style = mono)
            }
            Text("lightweight  ${state.lightweightProcessor}", style = mono)
            Text("specialist   ${state.specialistProcessor}", style = mono)
            state.stats?.let { s ->
                Text("latency      LM ${ms(s.lightweightMs)} · specialist ${ms(s.specialistMs)} · synth ${ms(s.synthesisMs)}", style = mono)
                Text("end to end   ${ms(s.latencyMs)} · ${String.format(Locale.US, "%.1f", s.framesPerSecond)} frames/s", style = mono)
                Text("early exit   ${pct(s.exitRate)} of ${s.frames} frames · refused ${state.refusedFrames}", style = mono)
                if (state.settings?.form == DemoSettings.Form.PRESYNTH) {
                    Text(
                        "rebuilds     ${s.resyntheses} (${pct(s.resynthesisRate)} of specialist frames), " +
                            "drift tolerance ${state.settings.driftTolerance}",
                        style = mono,
                    )
                }
            }
            state.error?.let { Text(it, color = Color(0xFFFF8A80), style = MaterialTheme.typography.bodySmall) }
        }
    }
}

@Composable
private fun Controls(state: UiState, viewModel: PipelineViewModel) {
    val settings = state.settings ?: return
    Surface(color = Color(0xAA000000), modifier = Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            ThresholdRow(state, settings, viewModel)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                state.forms.forEach { form ->
                    FilterChip(
                        selected = settings.form == form, onClick = { viewModel.apply(settings.withForm(form)) },
                        label = { Text(form.label) },
                    )
                }
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                // Every processor is offered: one the device lacks (marked ?) or a GPU the export's
                // specialist does not run right on (marked ✗) falls back to the CPU, and the overlay says why.
                Placement.Processor.values().forEach { p ->
                    val mark = when {
                        p !in state.processors -> "?"
                        p == Placement.Processor.GPU && settings.form in state.gpuProblems -> "✗"
                        else -> ""
                    }
                    FilterChip(
                        selected = settings.specialistProcessor == p, onClick = { viewModel.apply(settings.withProcessor(p)) },
                        label = { Text(p.name + mark) },
                    )
                }
                TwoStagePipeline.Mode.values().forEach { mode ->
                    FilterChip(
                        selected = settings.mode == mode, onClick = { viewModel.apply(settings.withMode(mode)) },
                        label = { Text(mode.name.lowercase(Locale.US)) },
                    )
                }
            }
        }
    }
}

@Composable
private fun ThresholdRow(state: UiState, settings: DemoSettings, viewModel: PipelineViewModel) {
    val threshold = settings.threshold
    Row(verticalAlignment = Alignment.CenterVertically) {
        val calibrated = state.calibratedThreshold?.let { String.format(Locale.US, " (calibrated %.2f)", it) } ?: ""
        Text(
            if (threshold == null) "early exit off" else "exit when confidence ≥ ${String.format(Locale.US, "%.2f", threshold)}$calibrated",
            color = Color.White, modifier = Modifier.weight(1f),
        )
        Switch(
            checked = threshold != null,
            onCheckedChange = { on -> viewModel.setThreshold(if (on) state.calibratedThreshold ?: 0.9f else null) },
        )
    }
    if (threshold != null) {
        Slider(value = threshold, onValueChange = { viewModel.setThreshold(it) }, valueRange = 0f..1f)
    }
}
