@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.lifecycle.compose

import androidx.compose.runtime.Composable
import androidx.compose.runtime.ProvidableCompositionLocal
import androidx.compose.runtime.State
import kotlinx.coroutines.flow.StateFlow

val LocalLifecycleOwner: ProvidableCompositionLocal<androidx.lifecycle.LifecycleOwner> get() = throw RuntimeException("Stub!")

@Composable
fun <T> StateFlow<T>.collectAsStateWithLifecycle(): State<T> = throw RuntimeException("Stub!")
