package qupath.ext.stimage.ui;

import javafx.event.ActionEvent;
import javafx.geometry.Insets;
import javafx.scene.Node;
import javafx.scene.Scene;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.scene.control.CheckBox;
import javafx.scene.control.ChoiceBox;
import javafx.scene.control.ComboBox;
import javafx.scene.control.Dialog;
import javafx.scene.control.Label;
import javafx.scene.control.Spinner;
import javafx.scene.control.SpinnerValueFactory;
import javafx.scene.control.TextField;
import javafx.scene.control.Tooltip;
import javafx.scene.layout.GridPane;
import javafx.stage.Window;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.core.CellsOptions;
import qupath.ext.stimage.core.ExplainOptions;
import qupath.ext.stimage.core.PixelSize;
import qupath.ext.stimage.core.PredictOptions;
import qupath.ext.stimage.core.Region;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The dialogs that ask for a run's options, filled from the backend's hello (models, genes, tile
 * size) and the preferences. Each returns the options, or empty when the user cancels; invalid
 * input keeps the dialog open with the reason shown in red. Call on the JavaFX thread.
 */
final class OptionDialogs {
    /** What the dialogs need to know about the current image. */
    static final class ImageState {
        final String name;
        final String pixelSize;
        final int selectedAnnotations;

        /**
         * @param name the image's name
         * @param pixelSize its pixel size as text, or null when it has none
         * @param selectedAnnotations selected area annotations
         */
        ImageState(String name, String pixelSize, int selectedAnnotations) {
            this.name = name;
            this.pixelSize = pixelSize;
            this.selectedAnnotations = selectedAnnotations;
        }
    }

    private OptionDialogs() {
    }

    static Optional<PredictOptions> predict(Window owner, HelloResult hello, ImageState image) {
        return predictForm(owner, hello, image).showAndWait();
    }

    /**
     * The predict dialog, built but not shown; {@link #predict} shows it and waits. Accepting it
     * stores the genes, tissue fraction, batch size and model as the new defaults.
     */
    static Form<PredictOptions> predictForm(Window owner, HelloResult hello, ImageState image) {
        Dialog<ButtonType> d = dialog(owner, "Predict expression", "Predict gene expression on '" + image.name + "'");
        GridPane g = grid();
        ComboBox<String> model = modelBox(hello);
        Label modelInfo = new Label();
        modelInfo.setId("modelInfo");
        modelInfo.setWrapText(true);
        modelInfo.setMaxWidth(440);
        Tooltip modelTip = new Tooltip();
        modelTip.setWrapText(true);
        modelTip.setMaxWidth(500);
        modelInfo.setTooltip(modelTip);
        Consumer<String> showModel = v -> {
            ModelInfo mi = modelOf(hello, v);
            modelInfo.setText(describe(mi));
            modelTip.setText(mi == null || mi.getDescription() == null ? modelInfo.getText() : mi.getDescription());
        };
        model.valueProperty().addListener((o, a, b) -> showModel.accept(b));
        showModel.accept(model.getValue());
        TextField genes = new TextField(StimagePrefs.genesProperty().get());
        genes.setId("genes");
        genes.setPromptText("all genes of the model");
        genes.setTooltip(new Tooltip("Genes separated by commas, e.g. ERBB2, GATA3; empty for all"));
        Label geneInfo = new Label();
        geneInfo.setId("geneReliability");
        geneInfo.setWrapText(true);
        geneInfo.setMaxWidth(440);
        Runnable showGenes = () -> geneInfo.setText(geneReliability(modelOf(hello, model.getValue()),
                genes.getText()));
        genes.textProperty().addListener((o, a, b) -> showGenes.run());
        model.valueProperty().addListener((o, a, b) -> showGenes.run());
        showGenes.run();
        ChoiceBox<Region> region = regionBox(image);
        TextField mpp = new TextField();
        Spinner<Integer> minTissue = spinner("minTissue", 0, 100,
                (int) Math.round(StimagePrefs.minTissueProperty().get() * 100), 1);
        Spinner<Integer> batch = spinner("batch", 1, 512, StimagePrefs.batchSizeProperty().get(), 1);
        int r = 0;
        g.addRow(r++, new Label("Model"), model);
        g.add(modelInfo, 1, r++);
        g.addRow(r++, new Label("Genes"), genes);
        g.add(geneInfo, 1, r++);
        g.addRow(r++, new Label("Region"), region);
        r = pixelSizeRow(g, r, image, mpp);
        g.addRow(r++, new Label("Min. tissue per tile (%)"), minTissue);
        g.addRow(r++, new Label("Tiles per request"), batch);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        Supplier<PredictOptions> build = () -> PredictOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .model(modelName(model.getValue()))
                .genes(checkGenes(modelOf(hello, model.getValue()), genes.getText()))
                .region(region.getValue())
                .mpp(parseMpp(mpp, image))
                .minTissue(intValue(minTissue, "Min. tissue per tile (%)") / 100.0)
                .batchSize(intValue(batch, "Tiles per request"))
                .build();
        return new Form<>(d, g, error, build, o -> {
            StimagePrefs.genesProperty().set(genes.getText().trim());
            StimagePrefs.minTissueProperty().set(o.getMinTissue());
            StimagePrefs.batchSizeProperty().set(o.getBatchSize());
            StimagePrefs.modelProperty().set(o.getModel() == null ? "" : o.getModel());
        });
    }

    static Optional<CellsOptions> cells(Window owner, ImageState image) {
        return cellsForm(owner, image).showAndWait();
    }

    /** The detect-cells dialog, built but not shown; {@link #cells} shows it and waits. */
    static Form<CellsOptions> cellsForm(Window owner, ImageState image) {
        Dialog<ButtonType> d = dialog(owner, "Detect cells", "Segment and type the cells of '" + image.name + "'");
        GridPane g = grid();
        ChoiceBox<Region> region = regionBox(image);
        CheckBox classify = new CheckBox("Type the cells (tumour, immune, stromal...)");
        classify.setId("classify");
        classify.setSelected(true);
        TextField mpp = new TextField();
        int r = 0;
        g.addRow(r++, new Label("Region"), region);
        g.add(classify, 1, r++);
        r = pixelSizeRow(g, r, image, mpp);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        return new Form<>(d, g, error, () -> CellsOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .region(region.getValue())
                .classify(classify.isSelected())
                .mpp(parseMpp(mpp, image))
                .build(), null);
    }

    static Optional<ExplainOptions> explain(Window owner, HelloResult hello, ImageState image, String tileText) {
        return explainForm(owner, hello, image, tileText).showAndWait();
    }

    /** The explain dialog, built but not shown; {@link #explain} shows it and waits. */
    static Form<ExplainOptions> explainForm(Window owner, HelloResult hello, ImageState image, String tileText) {
        Dialog<ButtonType> d = dialog(owner, "Explain tile", "Explain " + tileText + ": which nuclei drive a gene's "
                + "prediction");
        GridPane g = grid();
        ComboBox<String> model = modelBox(hello);
        ComboBox<String> gene = new ComboBox<>();
        gene.setId("gene");
        gene.setEditable(true);
        Runnable fillGenes = () -> {
            ModelInfo m = modelOf(hello, model.getValue());
            gene.getItems().setAll(m == null ? List.of() : m.getGenes());
            List<String> pref = new ArrayList<>(List.of(StimagePrefs.genesProperty().get().split("[,;\\s]+")));
            pref.removeIf(String::isBlank);
            gene.setValue(!pref.isEmpty() ? pref.get(0) : gene.getItems().isEmpty() ? "" : gene.getItems().get(0));
        };
        model.valueProperty().addListener((o, a, b) -> fillGenes.run());
        fillGenes.run();
        gene.setTooltip(new Tooltip("One gene, or several separated by commas (up to 50); genes marked "
                + "unreliable predicted poorly on held-out sections"));
        gene.setCellFactory(list -> new javafx.scene.control.ListCell<>() {
            @Override
            protected void updateItem(String item, boolean empty) {
                super.updateItem(item, empty);
                ModelInfo m = modelOf(hello, model.getValue());
                setText(empty || item == null ? null : m == null ? item : m.describeGene(item));
                setStyle(!empty && item != null && m != null && m.isUnreliable(item)
                        ? "-fx-text-fill: #8a6d3b; -fx-font-style: italic;" : "");
            }
        });
        ChoiceBox<String> method = new ChoiceBox<>();
        method.setId("method");
        method.getItems().setAll("lime", "occlusion");
        method.setValue("lime");
        ChoiceBox<String> target = new ChoiceBox<>();
        target.setId("target");
        target.getItems().setAll("mean", "p_high");
        target.setValue("mean");
        Spinner<Integer> samples = spinner("samples", 10, 10000, ExplainOptions.DEFAULT_NUM_SAMPLES, 100);
        TextField mpp = new TextField();
        int r = 0;
        g.addRow(r++, new Label("Model"), model);
        g.addRow(r++, new Label("Gene(s)"), gene);
        g.addRow(r++, new Label("Method"), method);
        g.addRow(r++, new Label("Explain"), target);
        g.addRow(r++, new Label("LIME samples"), samples);
        r = pixelSizeRow(g, r, image, mpp);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        return new Form<>(d, g, error, () -> ExplainOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .model(modelName(model.getValue()))
                .genes(explainGenes(modelOf(hello, model.getValue()), gene))
                .method(method.getValue())
                .target(target.getValue())
                .numSamples(intValue(samples, "LIME samples"))
                .mpp(parseMpp(mpp, image))
                // a context model's neighbours: Predict's minimum tissue, so the tile keeps the
                // neighbours it was predicted with
                .minTissue(Math.max(0, Math.min(1, StimagePrefs.minTissueProperty().get())))
                .build(), null);
    }

    /**
     * A built options dialog: OK builds the options (an invalid input keeps the dialog open with
     * the reason in red), Cancel or closing gives nothing.
     *
     * @param <T> the options
     */
    static final class Form<T> {
        final Dialog<ButtonType> dialog;
        final Label error;
        private final Consumer<T> onAccept;
        private T result;

        Form(Dialog<ButtonType> dialog, Node content, Label error, Supplier<T> build, Consumer<T> onAccept) {
            this.dialog = dialog;
            this.error = error;
            this.onAccept = onAccept;
            dialog.getDialogPane().setContent(content);
            Button ok = (Button) dialog.getDialogPane().lookupButton(ButtonType.OK);
            ok.addEventFilter(ActionEvent.ACTION, e -> {
                try {
                    result = build.get();
                    error.setText("");
                } catch (IllegalArgumentException ex) {
                    result = null;
                    showError(error, ex.getMessage());
                    e.consume();
                }
            });
        }

        /** @return the options when the dialog was closed with OK (and then stores them as defaults) */
        Optional<T> result() {
            ButtonType b = dialog.getResult();
            if (b != ButtonType.OK || result == null) {
                return Optional.empty();
            }
            if (onAccept != null) {
                onAccept.accept(result);
            }
            return Optional.of(result);
        }

        /** Shows the dialog and waits for OK (the options) or Cancel (empty). */
        Optional<T> showAndWait() {
            dialog.showAndWait();
            return result();
        }
    }

    // -- helpers -----------------------------------------------------------------------------

    private static final String DEFAULT_MODEL = "(backend default)";

    private static Dialog<ButtonType> dialog(Window owner, String title, String header) {
        Dialog<ButtonType> d = new Dialog<>();
        if (owner != null) {
            d.initOwner(owner);
        }
        d.setTitle("STImage: " + title);
        d.setHeaderText(header);
        d.getDialogPane().getButtonTypes().setAll(ButtonType.OK, ButtonType.CANCEL);
        d.setResizable(true);
        return d;
    }

    private static GridPane grid() {
        GridPane g = new GridPane();
        g.setHgap(10);
        g.setVgap(8);
        g.setPadding(new Insets(10));
        return g;
    }

    /** Shows a message in a dialog's error label, growing the window when the message needs more lines. */
    static void showError(Label error, String message) {
        error.setText(message);
        Scene scene = error.getScene();
        if (scene != null && scene.getWindow() != null && scene.getWindow().isShowing()) {
            scene.getRoot().applyCss();
            scene.getRoot().layout();
            if (scene.getRoot().prefHeight(scene.getWidth()) > scene.getHeight()) {
                scene.getWindow().sizeToScene();
            }
        }
    }

    private static Label errorLabel() {
        Label l = new Label();
        l.setId("error");
        l.setStyle("-fx-text-fill: #c00000;");
        l.setWrapText(true);
        l.setMaxWidth(460);
        return l;
    }

    private static ComboBox<String> modelBox(HelloResult hello) {
        ComboBox<String> box = new ComboBox<>();
        box.setId("model");
        box.getItems().add(DEFAULT_MODEL);
        for (ModelInfo m : hello.getModels()) {
            box.getItems().add(m.getName());
        }
        String pref = StimagePrefs.modelProperty().get();
        box.setValue(pref != null && hello.getModel(pref) != null ? pref : DEFAULT_MODEL);
        return box;
    }

    private static String modelName(String value) {
        return value == null || DEFAULT_MODEL.equals(value) ? null : value;
    }

    private static ModelInfo modelOf(HelloResult hello, String value) {
        String n = modelName(value);
        return n == null ? hello.getDefaultModel() : hello.getModel(n);
    }

    private static String describe(ModelInfo m) {
        if (m == null) {
            return "the backend serves no model";
        }
        return m.getGenes().size() + " genes, " + fmt(m.getTileUm()) + " µm tiles" + (m.getDescription() == null
                ? "" : "; " + shorten(m.getDescription(), 160));
    }

    private static ChoiceBox<Region> regionBox(ImageState image) {
        ChoiceBox<Region> box = new ChoiceBox<>();
        box.setId("region");
        box.getItems().setAll(Region.values());
        box.setValue(Region.SELECTED);
        box.setConverter(new javafx.util.StringConverter<Region>() {
            @Override
            public String toString(Region r) {
                if (r == null) {
                    return "";
                }
                switch (r) {
                    case SELECTED:
                        return image.selectedAnnotations > 0 ? "Selected annotations (" + image.selectedAnnotations
                                + ")" : "Selected annotations (none: whole image)";
                    case ANNOTATIONS:
                        return "All annotations";
                    default:
                        return "Whole image";
                }
            }

            @Override
            public Region fromString(String s) {
                return Region.SELECTED;
            }
        });
        return box;
    }

    private static int pixelSizeRow(GridPane g, int row, ImageState image, TextField mpp) {
        mpp.setId("mpp");
        if (image.pixelSize != null) {
            g.addRow(row, new Label("Pixel size"), new Label(image.pixelSize + " (from the image)"));
        } else {
            mpp.setPromptText("µm per pixel, e.g. 0.5");
            Label warn = new Label("This image has no pixel size: type it (or set it in the Image tab).");
            warn.setWrapText(true);
            warn.setMaxWidth(420);
            g.addRow(row, new Label("µm per pixel"), mpp);
            g.add(warn, 1, ++row);
        }
        return row + 1;
    }

    private static Double parseMpp(TextField field, ImageState image) {
        String t = field.getText() == null ? "" : field.getText().trim();
        if (t.isEmpty()) {
            if (image.pixelSize == null) {
                throw new IllegalArgumentException("This image has no pixel size: type its µm per pixel.");
            }
            return null;
        }
        double v;
        try {
            v = Double.parseDouble(t.replace(',', '.'));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("µm per pixel must be a number, e.g. 0.5; got '" + t + "'");
        }
        if (!(v >= PixelSize.MIN_UM && v <= PixelSize.MAX_UM)) {
            throw new IllegalArgumentException("µm per pixel must lie between " + PixelSize.MIN_UM + " and "
                    + Math.round(PixelSize.MAX_UM) + " (H&E scans: about 0.25 to 1); got '" + t + "'");
        }
        return v;
    }

    private static Spinner<Integer> spinner(String id, int min, int max, int value, int step) {
        Spinner<Integer> s = new Spinner<>(min, max, Math.max(min, Math.min(max, value)), step);
        s.setId(id);
        s.setEditable(true);
        return s;
    }

    /** The spinner's typed text (committed to it), checked; the spinner itself would drop bad text silently. */
    static int intValue(Spinner<Integer> s, String what) {
        SpinnerValueFactory.IntegerSpinnerValueFactory f = (SpinnerValueFactory.IntegerSpinnerValueFactory) s
                .getValueFactory();
        String t = s.getEditor().getText() == null ? "" : s.getEditor().getText().trim();
        int v;
        try {
            v = Integer.parseInt(t);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(what + " must be a whole number from " + f.getMin() + " to "
                    + f.getMax() + "; got '" + t + "'");
        }
        if (v < f.getMin() || v > f.getMax()) {
            throw new IllegalArgumentException(what + " must lie between " + f.getMin() + " and " + f.getMax()
                    + "; got " + v);
        }
        f.setValue(v);
        return v;
    }

    /** Most genes whose held-out reliability the predict dialog lists under the genes typed. */
    static final int GENES_DESCRIBED = 6;

    /**
     * The held-out reliability of the genes typed, as the predict dialog shows it under them:
     * each known gene with its held-out PCC (marked unreliable under the model's threshold), or
     * for all genes how many are unreliable. Unknown names are left to {@link #checkGenes}.
     */
    static String geneReliability(ModelInfo m, String text) {
        if (m == null) {
            return "";
        }
        List<String> typed = new ArrayList<>();
        for (String s : (text == null ? "" : text).split("[,;\\s]+")) {
            if (!s.isBlank() && m.getGenes().contains(s.trim()) && !typed.contains(s.trim())) {
                typed.add(s.trim());
            }
        }
        if (typed.isEmpty()) {
            long weak = m.getGenes().stream().filter(m::isUnreliable).count();
            return weak == 0 ? "" : weak + " of the model's " + m.getGenes().size()
                    + " genes are unreliable (predicted poorly on held-out sections)";
        }
        List<String> shown = new ArrayList<>();
        for (String gene : typed.subList(0, Math.min(GENES_DESCRIBED, typed.size()))) {
            shown.add(m.describeGene(gene));
        }
        String more = typed.size() > GENES_DESCRIBED ? ", ... (" + typed.size() + " genes)" : "";
        return String.join("; ", shown) + more;
    }

    /** The genes typed, or null for all; names the model lacks are refused here, not after the run starts. */
    private static List<String> checkGenes(ModelInfo m, String text) {
        List<String> genes = new ArrayList<>();
        for (String s : (text == null ? "" : text).split("[,;\\s]+")) {
            if (!s.isEmpty() && !genes.contains(s)) {
                genes.add(s);
            }
        }
        if (m == null || m.getGenes().isEmpty()) {
            return genes;
        }
        List<String> unknown = new ArrayList<>();
        List<String> hints = new ArrayList<>();
        for (String s : genes) {
            if (!m.getGenes().contains(s)) {
                unknown.add(s);
                for (String known : m.getGenes()) {
                    if (known.equalsIgnoreCase(s)) {
                        hints.add(known);
                    }
                }
            }
        }
        if (!unknown.isEmpty()) {
            throw new IllegalArgumentException("Model '" + m.getName() + "' does not predict " + String.join(", ",
                    unknown) + (hints.isEmpty() ? "" : " (did you mean " + String.join(", ", hints) + "?)") + ". It "
                    + "predicts " + m.getGenes().size() + " genes, e.g. " + String.join(", ", m.getGenes().subList(0,
                    Math.min(6, m.getGenes().size()))) + "; leave the field empty for all of them.");
        }
        return genes;
    }

    private static List<String> explainGenes(ModelInfo m, ComboBox<String> gene) {
        String t = gene.getEditor().getText();
        if (t == null || t.isBlank()) {
            throw new IllegalArgumentException("Choose a gene to explain (pick one from the list or type its name; "
                    + "several separated by commas, up to 50).");
        }
        return checkGenes(m, t);
    }

    static String fmt(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.format("%.3g", v);
    }

    /** At most about n characters, cut at a word (the label's tooltip has the whole text). */
    private static String shorten(String s, int n) {
        if (s.length() <= n) {
            return s;
        }
        int cut = s.lastIndexOf(' ', n - 4);
        return s.substring(0, cut > n / 2 ? cut : n - 4).replaceAll("[\\s,;:(]+$", "") + " ...";
    }
}
