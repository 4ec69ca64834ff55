// The plain-Java core: everything that is not Android UI or LiteRT calls. CI builds and tests
// the same sources without Gradle (`make jvm-test` at the repository root, Debian's JDK 17,
// JUnit 5 and Gson); this file is how Android Studio builds it for the app.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    implementation(libs.gson)
    testImplementation(libs.junit.jupiter)
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
}

tasks.test {
    useJUnitPlatform()
}
