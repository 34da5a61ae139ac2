/*
 * Build for the STImage QuPath extension (Java, package qupath.ext.stimage).
 *
 * Based on qupath/qupath-extension-template (main, build.gradle.kts) and the 'qupath-conventions'
 * plugin from qupath/qupath-gradle-plugin, which applies java-library, the JavaCPP platform plugin and
 * the OpenJFX plugin, sets the Java toolchain from the QuPath catalog, writes the jar manifest
 * (Implementation-Title/-Version, Automatic-Module-Name, QuPath-Version), adds sources/javadoc jars,
 * copies ./LICENSE into the jar, and configures tests with useJUnitPlatform().
 *
 * Dependency rule (Gradle Shadow):
 *   shadow(...)          -> compile against it, do NOT bundle (QuPath already ships it)
 *   implementation(...)  -> bundled into the shadow ("-all") jar
 *
 * Build the installable jar with:  ./gradlew shadowJar
 *   -> build/libs/qupath-extension-stimage-<version>-all.jar
 */

plugins {
    // Fat jar for the dependencies QuPath does not ship (JeroMQ).
    // Warning: the order matters - shadow must come before qupath-conventions, so that the conventions
    // plugin sees the 'shadow' configuration and routes JavaFX into it.
    // The template pins 8.3.5; 8.3.10 is the same 8.3.x API with Gradle 9 support and an ASM that reads
    // Java 25/26 class files (QuPath 0.7 compiles with Java 25).
    id("com.gradleup.shadow") version "8.3.10"
    // QuPath Gradle extension convention plugin (provided by the settings plugin)
    id("qupath-conventions")
}

qupathExtension {
    name = "qupath-extension-stimage"
    group = "io.github.stimage"
    version = "0.1.0-SNAPSHOT"
    description = "STImage for QuPath: spatial gene expression, cell types and nucleus-level " +
        "explanations from H&E, computed by the STImage Python backend"
    automaticModule = "io.github.stimage.extension.stimage"
}

/*
 * The extension code does not live in the default src/ folder at the repository root
 * (that root also holds the Python backend), but under qupath_extension/.
 */
sourceSets {
    main {
        java.setSrcDirs(listOf("qupath_extension/src/main/java"))
        resources.setSrcDirs(listOf("qupath_extension/src/main/resources"))
    }
    test {
        java.setSrcDirs(listOf("qupath_extension/src/test/java"))
        resources.setSrcDirs(listOf("qupath_extension/src/test/resources"))
    }
}

// Pure-Java ZeroMQ used by qupath.ext.stimage.client to talk to the Python backend.
// MPL-2.0; pulls in eu.neilalexander:jnacl (also bundled). Neither is part of QuPath.
val jeromqVersion = "0.6.0"

dependencies {

    // Provided by QuPath at runtime: compile against them, never bundle them.
    // libs.bundles.qupath = qupath-gui-fx, qupath-core, qupath-core-processing
    // (qupath-core exposes Gson and JTS as API dependencies)
    shadow(libs.bundles.qupath)
    shadow(libs.bundles.logging)        // slf4j-api (+ logback), shipped with QuPath
    shadow(libs.qupath.fxtras)
    shadow(libs.gson)                   // explicit, same version as QuPath's catalog
    shadow(libs.jts)                    // explicit, same version as QuPath's catalog

    // Bundled into the shadow jar
    implementation("org.zeromq:jeromq:$jeromqVersion")

    // For testing ('shadow' dependencies are not on the test classpath, so repeat what tests need)
    testImplementation(libs.bundles.qupath)
    testImplementation(libs.bundles.logging)
    testImplementation(libs.junit)
    // Gradle 9 no longer puts the JUnit Platform launcher on the test runtime classpath by itself
    testRuntimeOnly(libs.junit.platform)
}

tasks.withType<JavaCompile>().configureEach {
    options.encoding = "UTF-8"
}

tasks.shadowJar {
    // Keep META-INF/services entries of bundled jars and of the extension itself
    // (qupath.lib.gui.extensions.QuPathExtension must survive)
    mergeServiceFiles()
}

// Make './gradlew build' (and 'assemble') produce the installable -all jar as well
tasks.assemble {
    dependsOn(tasks.shadowJar)
}

tasks.test {
    useJUnitPlatform()
    testLogging {
        events("passed", "skipped", "failed")
        exceptionFormat = org.gradle.api.tasks.testing.logging.TestExceptionFormat.FULL
    }
}
