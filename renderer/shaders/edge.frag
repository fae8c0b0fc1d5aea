#version 330
uniform vec4 u_edge_color;
out vec4 f_color;
void main() {
    f_color = clamp(u_edge_color, 0.0, 1.0);
}
