package qupath.ext.stimage.client;

/** Params of {@code hello}: who is asking (logged by the server). */
public final class HelloParams {
    private ClientInfo client;

    HelloParams() {
    }

    /**
     * @param name client name
     * @param version client version
     */
    public HelloParams(String name, String version) {
        this.client = new ClientInfo(name, version);
    }

    /** @return the client info, or null */
    public ClientInfo getClient() {
        return client;
    }

    /** {@code {"name": ..., "version": ...}}. */
    public static final class ClientInfo {
        private String name;
        private String version;

        ClientInfo() {
        }

        ClientInfo(String name, String version) {
            this.name = name;
            this.version = version;
        }

        /** @return the client's name */
        public String getName() {
            return name;
        }

        /** @return the client's version */
        public String getVersion() {
            return version;
        }
    }
}
