package qupath.ext.stimage.client;

import com.google.gson.annotations.SerializedName;

import java.util.List;

/** Result of {@code hello}: server and protocol versions, models, limits. */
public final class HelloResult {
    private String server;
    private String version;
    private int protocol;
    private List<Integer> protocols;
    private List<String> ops;
    private List<ModelInfo> models;
    private Limits limits;
    private String device;
    @SerializedName("slide_paths")
    private boolean slidePaths;

    HelloResult() {
    }

    /** @return {@code stimage} */
    public String getServer() {
        return server;
    }

    /** @return the server's package version */
    public String getVersion() {
        return version;
    }

    /** @return the protocol version of this reply */
    public int getProtocol() {
        return protocol;
    }

    /** @return every protocol version the server speaks */
    public List<Integer> getProtocols() {
        return protocols == null ? List.of() : List.copyOf(protocols);
    }

    /** @return the ops the server supports */
    public List<String> getOps() {
        return ops == null ? List.of() : List.copyOf(ops);
    }

    /** @return the models, the default first */
    public List<ModelInfo> getModels() {
        return models == null ? List.of() : List.copyOf(models);
    }

    /** @return the default model (marked {@code default}, else the first), or null when none */
    public ModelInfo getDefaultModel() {
        if (models == null || models.isEmpty()) {
            return null;
        }
        return models.stream().filter(ModelInfo::isDefault).findFirst().orElse(models.get(0));
    }

    /**
     * @param name a model name
     * @return that model, or null
     */
    public ModelInfo getModel(String name) {
        return models == null ? null
                : models.stream().filter(m -> m.getName().equals(name)).findFirst().orElse(null);
    }

    /** @return the limits */
    public Limits getLimits() {
        return limits;
    }

    /** @return the device the models run on ({@code cpu}, {@code cuda}, ...) */
    public String getDevice() {
        return device;
    }

    /** @return whether slide-path predict is allowed */
    public boolean isSlidePaths() {
        return slidePaths;
    }
}
