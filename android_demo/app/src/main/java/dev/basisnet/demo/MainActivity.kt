package dev.basisnet.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.core.content.ContextCompat
import dev.basisnet.demo.ui.CameraPermission
import dev.basisnet.demo.ui.DemoScreen

class MainActivity : ComponentActivity() {
    private val viewModel: PipelineViewModel by viewModels()
    private var permission by mutableStateOf(CameraPermission.ASKING)

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        permission = if (granted) CameraPermission.GRANTED else CameraPermission.REFUSED
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val granted = ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED
        permission = if (granted) CameraPermission.GRANTED else CameraPermission.ASKING
        if (!granted) askCamera.launch(Manifest.permission.CAMERA)
        setContent {
            DemoScreen(viewModel, permission, onAskAgain = { askCamera.launch(Manifest.permission.CAMERA) })
        }
    }
}
