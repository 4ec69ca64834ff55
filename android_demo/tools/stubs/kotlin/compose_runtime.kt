// Compile-only signatures of the Jetpack Compose APIs the app calls, reduced to the parameters
// it uses (named arguments keep call sites valid against the real, longer signatures). Without
// the Compose compiler plugin, @Composable is a plain annotation here: this checks names and
// types, not the rules of composition.
@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.runtime

import kotlin.reflect.KProperty

private fun stub(): Nothing = throw RuntimeException("Stub!")

@Target(AnnotationTarget.FUNCTION, AnnotationTarget.TYPE, AnnotationTarget.PROPERTY_GETTER, AnnotationTarget.TYPE_PARAMETER)
annotation class Composable

interface State<out T> {
    val value: T
}

interface MutableState<T> : State<T> {
    override var value: T
}

fun <T> mutableStateOf(value: T): MutableState<T> = stub()

operator fun <T> State<T>.getValue(thisObj: Any?, property: KProperty<*>): T = stub()

operator fun <T> MutableState<T>.setValue(thisObj: Any?, property: KProperty<*>, value: T): Unit = stub()

@Composable
inline fun <T> remember(crossinline calculation: () -> T): T = throw RuntimeException("Stub!")

class DisposableEffectResult

class DisposableEffectScope {
    inline fun onDispose(crossinline onDisposeEffect: () -> Unit): DisposableEffectResult = throw RuntimeException("Stub!")
}

@Composable
fun DisposableEffect(key1: Any?, effect: DisposableEffectScope.() -> DisposableEffectResult): Unit = stub()

abstract class CompositionLocal<T> {
    val current: T
        @Composable get() = stub()
}

abstract class ProvidableCompositionLocal<T> : CompositionLocal<T>()
