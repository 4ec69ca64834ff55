// Compile-only signatures of the AndroidX Kotlin APIs (lifecycle, activity, camera-lifecycle)
// the app calls, reduced to the parameters it uses. Bodies throw.
@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.lifecycle

import kotlinx.coroutines.CoroutineScope

private fun stub(): Nothing = throw RuntimeException("Stub!")

interface LifecycleOwner

abstract class ViewModel {
    protected open fun onCleared(): Unit = stub()
}

open class AndroidViewModel(application: android.app.Application) : ViewModel() {
    open fun <T : android.app.Application> getApplication(): T = stub()
}

val ViewModel.viewModelScope: CoroutineScope
    get() = stub()
