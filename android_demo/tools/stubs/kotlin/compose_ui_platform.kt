@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.ui.platform

import androidx.compose.runtime.ProvidableCompositionLocal

val LocalContext: ProvidableCompositionLocal<android.content.Context> get() = throw RuntimeException("Stub!")
