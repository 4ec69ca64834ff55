@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.activity

import androidx.activity.result.ActivityResultCallback
import androidx.activity.result.ActivityResultLauncher
import androidx.activity.result.contract.ActivityResultContract

private fun stub(): Nothing = throw RuntimeException("Stub!")

open class ComponentActivity : android.app.Activity(), androidx.lifecycle.LifecycleOwner {
    fun <I, O> registerForActivityResult(contract: ActivityResultContract<I, O>, callback: ActivityResultCallback<O>):
        ActivityResultLauncher<I> = stub()
}

inline fun <reified VM : androidx.lifecycle.ViewModel> ComponentActivity.viewModels(): Lazy<VM> = throw RuntimeException("Stub!")
