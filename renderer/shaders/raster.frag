#version 330
// Benchmark baseline: the cheapest possible fragment for the same triangles.
in vec3 v_normal;
in vec2 v_uv;
out vec4 f_color;
void main() {
    f_color = vec4(1.0);
}
