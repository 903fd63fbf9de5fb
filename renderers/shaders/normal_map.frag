#version 330 core
// OpenGL camera-frame normal (x right, y up, z toward the viewer) as colour n * 0.5 + 0.5.
in vec3 view_normal;
out vec4 frag_color;

void main()
{
    frag_color = vec4(normalize(view_normal) * 0.5 + 0.5, 1.0);
}
