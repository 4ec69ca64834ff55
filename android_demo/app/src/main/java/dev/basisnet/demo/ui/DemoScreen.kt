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
import androidx.compose.material3.ExperimentalMaterial3Api
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
import dev.basisnet.core.TwoStagePipeline
import dev.basisnet.demo.PipelineViewModel
import dev.basisnet.demo.Processor
import dev.basisnet.demo.SpecialistForm
import dev.basisnet.demo.UiState
import dev.basisnet.demo.toFrame
import java.util.Locale
import java.util.concurrent.Executors

@Composable
fun DemoScreen(viewModel: PipelineViewModel, cameraAllowed: Boolean) {
    val state by viewModel.state.collectAsStateWithLifecycle()
    MaterialTheme {
        Box(Modifier.fillMaxSize().background(Color.Black)) {
            if (cameraAllowed) {
                CameraFeed(viewModel)
            } else {
                Text("Camera permission is needed to classify frames.", color = Color.White,
                    modifier = Modifier.align(Alignment.Center).padding(24.dp))
            }
            Column(Modifier.fillMaxSize().safeDrawingPadding(), verticalArrangement = Arrangement.SpaceBetween) {
                Overlay(state)
                Controls(state, viewModel)
            }
        }
    }
}

/** CameraX preview plus an ImageAnalysis stream (KEEP_ONLY_LATEST, RGBA) into the pipeline. */
@Composable
private fun CameraFeed(viewModel: PipelineViewModel) {
    val context = LocalContext.current
    val lifecycleOwner = LocalLifecycleOwner.current
    val previewView = remember { PreviewView(context) }
    val analyzerThread = remember { Executors.newSingleThreadExecutor() }
    DisposableEffect(lifecycleOwner) {
        val providerFuture = ProcessCameraProvider.getInstance(context)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(
                    ResolutionSelector.Builder()
                        .setResolutionStrategy(
                            ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER)
                        )
                        .build()
                )
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analyzerThread) { proxy -> proxy.use { viewModel.onFrame(it.toFrame()) } }
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

/** Class and confidence, which stage answered, per-stage latency, throughput, exit rate, processors. */
@Composable
private fun Overlay(state: UiState) {
    Surface(color = Color(0xAA000000), modifier = Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            val last = state.last
            val name = last?.let { state.labels.getOrElse(it.label) { "#${it.label}" } } ?: "–"
            Text(
                if (last == null) state.status else "$name  ${String.format(Locale.US, "%.0f%%", 100 * last.confidence)}",
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
                Text("early exit   ${String.format(Locale.US, "%.0f%%", 100 * s.exitRate)} of ${s.frames} frames · dropped at the door ${state.rejectedFrames}", style = mono)
            }
            state.error?.let { Text(it, color = Color(0xFFFF8A80), style = MaterialTheme.typography.bodySmall) }
        }
    }
}

@OptIn(ExperimentalMaterial3Api::class)
@Composable
private fun Controls(state: UiState, viewModel: PipelineViewModel) {
    val settings = state.settings
    Surface(color = Color(0xAA000000), modifier = Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            val threshold = settings.threshold
            Row(verticalAlignment = Alignment.CenterVertically) {
                Text(
                    if (threshold == null) "early exit off" else "exit when confidence ≥ ${String.format(Locale.US, "%.2f", threshold)}" +
                        (state.calibratedThreshold?.let { String.format(Locale.US, " (calibrated %.2f)", it) } ?: ""),
                    color = Color.White, modifier = Modifier.weight(1f),
                )
                Switch(checked = threshold != null, onCheckedChange = { on ->
                    viewModel.setThreshold(if (on) state.calibratedThreshold ?: 0.9f else null)
                })
            }
            if (threshold != null) {
                Slider(value = threshold, onValueChange = { viewModel.setThreshold(it) }, valueRange = 0f..1f)
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                SpecialistForm.values().forEach { form ->
                    FilterChip(selected = settings.form == form, onClick = { viewModel.apply(settings.copy(form = form)) },
                        label = { Text(form.label) })
                }
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Processor.values().forEach { p ->
                    FilterChip(selected = settings.processor == p, onClick = { viewModel.apply(settings.copy(processor = p)) },
                        label = { Text(p.name) })
                }
                TwoStagePipeline.Mode.values().forEach { mode ->
                    FilterChip(selected = settings.mode == mode, onClick = { viewModel.apply(settings.copy(mode = mode)) },
                        label = { Text(mode.name.lowercase(Locale.US)) })
                }
            }
        }
    }
}
