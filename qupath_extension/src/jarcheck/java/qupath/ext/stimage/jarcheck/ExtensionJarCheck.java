package qupath.ext.stimage.jarcheck;

import qupath.lib.gui.extensions.QuPathExtension;

import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.ServiceLoader;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.Manifest;

/**
 * Checks the installable extension jar the way QuPath will use it (run by
 * scripts/check_extension_jar.sh; never packaged):
 *
 * <ul>
 * <li>META-INF/services/qupath.lib.gui.extensions.QuPathExtension names the extension class, which
 * is in the jar;</li>
 * <li>the manifest's QuPath-Version, Implementation-Title and Implementation-Version are the
 * expected ones;</li>
 * <li>no QuPath class other than qupath.ext.stimage, and no JavaFX, Gson, JTS or SLF4J class, is
 * inside (QuPath ships those; two copies break class loading); JeroMQ and jnacl are;</li>
 * <li>ServiceLoader finds and instantiates the extension from the jar, in a class loader whose
 * parent holds only what QuPath provides (here the compile-only stand-ins, JavaFX, Gson, JTS,
 * SLF4J), as QuPath's extension class loader does;</li>
 * <li>the bundled JeroMQ can use CURVE (it needs the bundled jnacl).</li>
 * </ul>
 *
 * Usage: {@code ExtensionJarCheck JAR QUPATH_VERSION TITLE VERSION} with the stand-ins, JavaFX,
 * Gson, JTS and SLF4J on the class path. Prints each check; exits 1 when one fails.
 */
public final class ExtensionJarCheck {
    static final String SERVICE = "META-INF/services/qupath.lib.gui.extensions.QuPathExtension";
    static final String EXTENSION = "qupath.ext.stimage.StimageExtension";
    /** Packages that must not be in the jar: QuPath and the libraries it ships. */
    static final List<String> FORBIDDEN = List.of("qupath/", "javafx/", "com/sun/javafx/", "com/google/gson/",
            "org/locationtech/", "org/slf4j/", "ch/qos/logback/");
    /** Packages that must be in it: the extension and what it bundles. */
    static final List<String> REQUIRED = List.of("qupath/ext/stimage/client/StimageClient.class",
            "qupath/ext/stimage/client/CurveKeys.class", "org/zeromq/ZMQ.class",
            "com/neilalexander/jnacl/NaCl.class");

    private final List<String> failures = new ArrayList<>();

    private ExtensionJarCheck() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ExtensionJarCheck JAR QUPATH_VERSION TITLE VERSION");
            System.exit(2);
        }
        ExtensionJarCheck c = new ExtensionJarCheck();
        c.run(Path.of(args[0]), args[1], args[2], args[3]);
        if (!c.failures.isEmpty()) {
            System.err.println("ExtensionJarCheck: " + c.failures.size() + " check(s) failed for " + args[0] + ":");
            for (String f : c.failures) {
                System.err.println("  FAILED: " + f);
            }
            System.exit(1);
        }
        System.err.println("ExtensionJarCheck: all checks passed for " + args[0]);
    }

    private void check(boolean ok, String what) {
        System.err.println((ok ? "  ok      " : "  FAILED  ") + what);
        if (!ok) {
            failures.add(what);
        }
    }

    private void run(Path jar, String qupathVersion, String title, String version) throws Exception {
        check(Files.isRegularFile(jar), "the jar exists: " + jar);
        try (JarFile jf = new JarFile(jar.toFile())) {
            // the services entry
            JarEntry service = jf.getJarEntry(SERVICE);
            check(service != null, SERVICE + " is in the jar");
            if (service != null) {
                List<String> names = new ArrayList<>();
                try (InputStream in = jf.getInputStream(service)) {
                    for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\\R")) {
                        String l = line.replaceAll("#.*", "").trim();
                        if (!l.isEmpty()) {
                            names.add(l);
                        }
                    }
                }
                check(names.equals(List.of(EXTENSION)), SERVICE + " names exactly " + EXTENSION + " (found " + names + ")");
            }
            check(jf.getJarEntry(EXTENSION.replace('.', '/') + ".class") != null, EXTENSION + " is in the jar");
            // the manifest
            Manifest mf = jf.getManifest();
            check(mf != null, "the jar has a manifest");
            if (mf != null) {
                Attributes a = mf.getMainAttributes();
                check(qupathVersion.equals(a.getValue("QuPath-Version")),
                        "manifest QuPath-Version is " + qupathVersion + " (found " + a.getValue("QuPath-Version") + ")");
                check(title.equals(a.getValue("Implementation-Title")),
                        "manifest Implementation-Title is " + title + " (found " + a.getValue("Implementation-Title") + ")");
                check(version.equals(a.getValue("Implementation-Version")),
                        "manifest Implementation-Version is " + version + " (found "
                                + a.getValue("Implementation-Version") + ")");
            }
            // what is inside
            List<String> forbidden = new ArrayList<>();
            int classes = 0;
            for (Enumeration<JarEntry> e = jf.entries(); e.hasMoreElements();) {
                String n = e.nextElement().getName();
                if (n.endsWith(".class")) {
                    classes++;
                }
                if (n.startsWith("qupath/ext/stimage/") || n.equals("qupath/ext/") || n.equals("qupath/")) {
                    continue;
                }
                for (String p : FORBIDDEN) {
                    if (n.startsWith(p) && !n.endsWith("/")) {
                        forbidden.add(n);
                        break;
                    }
                }
            }
            check(forbidden.isEmpty(), "no QuPath (other than qupath.ext.stimage), JavaFX, Gson, JTS or SLF4J class inside"
                    + (forbidden.isEmpty() ? "" : ": found " + forbidden.size() + ", e.g. "
                            + forbidden.subList(0, Math.min(5, forbidden.size()))));
            for (String r : REQUIRED) {
                check(jf.getJarEntry(r) != null, r + " is in the jar");
            }
            System.err.println("  (" + classes + " classes in the jar)");
        }
        loadThroughServiceLoader(jar);
    }

    private void loadThroughServiceLoader(Path jar) throws IOException {
        URL url = jar.toUri().toURL();
        // parent: this class path (stand-ins, JavaFX, Gson, JTS, SLF4J), the extension only in the jar
        try (URLClassLoader loader = new URLClassLoader(new URL[] {url}, ExtensionJarCheck.class.getClassLoader())) {
            boolean onParent = ExtensionJarCheck.class.getClassLoader().getResource(
                    EXTENSION.replace('.', '/') + ".class") != null;
            check(!onParent, "the extension class is not on the check's own class path (only in the jar)");
            List<QuPathExtension> found = new ArrayList<>();
            try {
                for (QuPathExtension ext : ServiceLoader.load(QuPathExtension.class, loader)) {
                    found.add(ext);
                }
            } catch (java.util.ServiceConfigurationError | LinkageError e) {
                check(false, "ServiceLoader loads the extension (" + e + ")");
                return;
            }
            QuPathExtension ext = found.stream().filter(x -> x.getClass().getName().equals(EXTENSION)).findFirst()
                    .orElse(null);
            check(ext != null, "ServiceLoader finds " + EXTENSION + " in the jar (found " + found + ")");
            if (ext == null) {
                return;
            }
            URL from = ext.getClass().getProtectionDomain().getCodeSource().getLocation();
            check(url.equals(from), "the extension class comes from the jar (" + from + ")");
            check("STImage".equals(ext.getName()) && !ext.getDescription().isBlank(),
                    "the extension answers getName() = STImage and a description");
            // CURVE from the jar: JeroMQ's key generation needs the bundled jnacl
            try {
                Class<?> curve = Class.forName("org.zeromq.ZMQ$Curve", true, loader);
                check(curve.getProtectionDomain().getCodeSource().getLocation().equals(url),
                        "JeroMQ is loaded from the jar");
                Object pair = curve.getMethod("generateKeyPair").invoke(null);
                String pub = (String) pair.getClass().getField("publicKey").get(pair);
                check(pub != null && pub.length() == 40, "the bundled JeroMQ makes CURVE keys (jnacl bundled)");
            } catch (ReflectiveOperationException | LinkageError e) {
                check(false, "the bundled JeroMQ makes CURVE keys (" + e + ")");
            }
        }
    }
}
