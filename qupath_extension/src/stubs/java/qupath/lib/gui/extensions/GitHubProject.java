/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.gui.extensions;

public interface GitHubProject {
    public GitHubRepo getRepository();

    public static class GitHubRepo {
        private GitHubRepo() {
        }

        public static GitHubRepo create(String name, String owner, String repo) {
            throw new UnsupportedOperationException("stub");
        }
    }
}
