/*
 * Gradle settings for the STImage QuPath extension.
 *
 * Based on qupath/qupath-extension-template (main, settings.gradle.kts), which uses the
 * QuPath settings plugin 'io.github.qupath.qupath-extension-settings' (qupath/qupath-gradle-plugin).
 * That plugin adds the SciJava Maven repositories and imports QuPath's published version catalog
 * (io.github.qupath:qupath-catalog:<qupath version>) as 'libs', so build.gradle.kts can use
 * libs.bundles.qupath, libs.bundles.logging, libs.junit, ... at exactly the versions QuPath ships.
 *
 * The Java sources are not at the repository root: see build.gradle.kts (sourceSets), which points
 * Gradle at qupath_extension/src/{main,test}/....
 */

pluginManagement {
    repositories {
        gradlePluginPortal()
        maven {
            url = uri("https://maven.scijava.org/content/repositories/releases")
        }
    }
}

rootProject.name = "qupath-extension-stimage"

/*
 * Target QuPath version. The version catalog for this release decides every QuPath-provided
 * dependency version *and* the Java toolchain (catalog 'jdk' version):
 *   QuPath 0.7.x -> Java 25 (default here)
 *   QuPath 0.6.x -> Java 21: build with  ./gradlew shadowJar -Pqupath.version=0.6.0
 * A jar built for 0.7 (class files for Java 25) will not load in QuPath 0.6.
 */
qupath {
    version = providers.gradleProperty("qupath.version").getOrElse("0.7.0")
}

plugins {
    // Lets Gradle download the JDK toolchain requested by the QuPath catalog (25 for 0.7, 21 for 0.6)
    // when it is not installed locally. 1.0.0 is the version QuPath v0.7.0 itself uses (Gradle 9 compatible).
    id("org.gradle.toolchains.foojay-resolver-convention") version "1.0.0"
    // QuPath Gradle settings plugin: SciJava repositories + QuPath version catalog
    id("io.github.qupath.qupath-extension-settings") version "0.2.1"
}
