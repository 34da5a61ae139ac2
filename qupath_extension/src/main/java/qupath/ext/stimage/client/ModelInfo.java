package qupath.ext.stimage.client;

import com.google.gson.annotations.SerializedName;

import java.util.Collections;
import java.util.List;
import java.util.Map;

/** One model served, from hello: genes, physical tile size and input size. */
public final class ModelInfo {
    private String name;
    private List<String> genes;
    @SerializedName("tile_um")
    private double tileUm;
    @SerializedName("tile_px")
    private int tilePx;
    private String stain;
    private List<String> encoders;
    @SerializedName("default")
    private boolean isDefault;
    @SerializedName("classifier_genes")
    private List<String> classifierGenes;
    private String description;
    @SerializedName("gene_pcc")
    private Map<String, Double> genePcc;
    @SerializedName("unreliable_genes")
    private List<String> unreliableGenes;
    @SerializedName("context_um")
    private Double contextUm;

    ModelInfo() {
    }

    /** @return the model name (use it as predict's {@code model}) */
    public String getName() {
        return name;
    }

    /** @return the genes it predicts */
    public List<String> getGenes() {
        return genes == null ? List.of() : List.copyOf(genes);
    }

    /** @return the physical side of a tile in µm */
    public double getTileUm() {
        return tileUm;
    }

    /** @return the model's input side in pixels */
    public int getTilePx() {
        return tilePx;
    }

    /** @return the µm per pixel at which tiles need no resizing: {@code tile_um / tile_px} */
    public double getNativeMpp() {
        return tileUm / tilePx;
    }

    /**
     * @return how far (µm between tile centres) neighbouring tiles give a tile its spatial
     *         context; 0 for a model that predicts each tile alone
     */
    public double getContextUm() {
        return contextUm == null ? 0 : contextUm;
    }

    /** @return the stain normalisation method, or null */
    public String getStain() {
        return stain;
    }

    /** @return the feature encoders */
    public List<String> getEncoders() {
        return encoders == null ? List.of() : List.copyOf(encoders);
    }

    /** @return whether this is the server's default model */
    public boolean isDefault() {
        return isDefault;
    }

    /** @return genes with P(high), or an empty list */
    public List<String> getClassifierGenes() {
        return classifierGenes == null ? List.of() : List.copyOf(classifierGenes);
    }

    /** @return the description, or null */
    public String getDescription() {
        return description;
    }

    /**
     * @return each gene's held-out Pearson correlation (null values where unknown); empty for
     *     servers or models that do not report it
     */
    public Map<String, Double> getGenePcc() {
        return genePcc == null ? Map.of() : Collections.unmodifiableMap(genePcc);
    }

    /** @return genes whose held-out PCC is under the server's reliability threshold */
    public List<String> getUnreliableGenes() {
        return unreliableGenes == null ? List.of() : List.copyOf(unreliableGenes);
    }

    /**
     * @param gene a gene of this model
     * @return whether the gene is marked unreliable (false when the model does not say)
     */
    public boolean isUnreliable(String gene) {
        return unreliableGenes != null && unreliableGenes.contains(gene);
    }

    /**
     * @param gene a gene of this model
     * @return the gene as a picker shows it: with its held-out PCC and, under the threshold,
     *     marked unreliable
     */
    public String describeGene(String gene) {
        Double pcc = genePcc == null ? null : genePcc.get(gene);
        if (pcc == null) {
            return gene;
        }
        String text = String.format(java.util.Locale.ROOT, "%s (held-out PCC %.2f)", gene, pcc);
        return isUnreliable(gene) ? text + " - unreliable" : text;
    }
}
