@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.camera.lifecycle

import androidx.camera.core.Camera
import androidx.camera.core.CameraSelector
import androidx.camera.core.UseCase
import com.google.common.util.concurrent.ListenableFuture

class ProcessCameraProvider private constructor() {
    fun unbindAll(): Unit = throw RuntimeException("Stub!")

    fun bindToLifecycle(owner: androidx.lifecycle.LifecycleOwner, selector: CameraSelector, vararg useCases: UseCase): Camera =
        throw RuntimeException("Stub!")

    companion object {
        @JvmStatic
        fun getInstance(context: android.content.Context): ListenableFuture<ProcessCameraProvider> = throw RuntimeException("Stub!")
    }
}
